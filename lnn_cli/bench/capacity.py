"""The largest training set a stack admits, by the launcher's own checks (`lnn_core.launch.budget`): for a network,
a dtype and K workers, the most examples of uint8 features (the workers job's kind of data) whose one file (K = 1)
or whose K parts (K > 1) the launcher accepts at a memory size. Issue 19 asks for it at the default memory size.

    python -m lnn_cli.bench.capacity [--memory 1024] [--neurons 128,64,10] [--features 784] [--workers 1,8]
"""

import argparse
import sys

import numpy as np

from lnn_cli.bench.__main__ import positive_ints
from lnn_cli.bench.workers import hidden_relu_softmax
from lnn_core.aws.usage import DEFAULT_MEMORY_MB
from lnn_core.errors import LnnInputError
from lnn_core.launch.budget import (
    ArrayHeader,
    NpzLayout,
    check_npz_fits,
    check_part_fits,
    check_training_fits,
    parameter_copies,
    value_bytes,
)
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.network import DTYPES

NPY_HEADER = 128  # bytes of an .npy header (numpy.savez's)
MOST_EXAMPLES = 10**9


def uint8_layout(rows: int, features: int) -> NpzLayout:
    """An .npz of X (rows, features) and y (rows,), both uint8, as numpy.savez stores them (uncompressed)."""
    X = ArrayHeader("X", (rows, features), np.dtype("uint8"), NPY_HEADER + rows * features)
    y = ArrayHeader("y", (rows,), np.dtype("uint8"), NPY_HEADER + rows)
    return NpzLayout({"X": X, "y": y}, X.member_bytes + y.member_bytes)


def admitted(examples: int, features: int, config: TrainingConfig, memory_mb: int) -> bool:
    """Whether the launcher admits `examples` at `memory_mb`: one file at K = 1, else every one of the K parts
    (the first examples % K parts one example more)."""
    try:
        if config.workers == 1:
            layout = uint8_layout(examples, features)
            check_npz_fits(layout, compressed_bytes=layout.uncompressed_bytes, memory_mb=memory_mb, source="data")
            check_training_fits(
                layout,
                config.neurons,
                memory_mb=memory_mb,
                source="data",
                copies=parameter_copies(config, layout),
                itemsize=value_bytes(config),
            )
            return True
        layout = uint8_layout(-(-examples // config.workers), features)  # the largest part
        check_part_fits(
            layout,
            compressed_bytes=layout.uncompressed_bytes,
            examples=examples,
            neurons=config.neurons,
            memory_mb=memory_mb,
            source="part",
            copies=parameter_copies(config, layout),
            itemsize=value_bytes(config),
        )
        return True
    except LnnInputError:
        return False


def largest_examples(features: int, config: TrainingConfig, memory_mb: int) -> int:
    """The most examples `admitted` (0: none), by bisection: admission only gets harder with more examples."""
    low, high = 0, MOST_EXAMPLES
    while low < high:
        middle = (low + high + 1) // 2
        if admitted(middle, features, config, memory_mb):
            low = middle
        else:
            high = middle - 1
    return low


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnn_cli.bench.capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB, help="the trainer's memory_size in MB")
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--neurons", type=positive_ints, default=[128, 64, 10])
    parser.add_argument("--workers", type=positive_ints, default=[1, 8])
    parser.add_argument("--dtype", choices=DTYPES, default="float64")
    args = parser.parse_args(argv)
    activations = hidden_relu_softmax(args.neurons)
    for workers in args.workers:
        config = TrainingConfig.from_parameters(
            {
                "neurons": args.neurons,
                "activations": activations,
                "learning_rate": 0.5,
                "epochs": 1,
                "data": "runs/capacity/data/" if workers > 1 else "runs/capacity/data.npz",
                "workers": workers,
                "granularity": "epoch",
                "dtype": args.dtype,
            }
        )
        examples = largest_examples(args.features, config, args.memory)
        print(
            f"{args.memory} MB, {args.features}-{'-'.join(map(str, args.neurons))}, {args.dtype}, K = {workers}: "
            f"at most {examples:,} examples ({examples * args.features / 1e6:,.0f} MB of uint8 features)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
