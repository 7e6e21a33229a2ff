"""Memory guard rails: what an input may cost before it is read, and what a training step will need.

Everything here reads sizes and headers, never the data itself: an .npz is a zip of .npy members, each with a
small header that declares its dtype and shape. The members' declared sizes, checked against those headers,
bound what loading can allocate, so a 346-byte file that declares a 7 TiB array, or a zip bomb of zeros, is
refused before numpy allocates anything.
"""

import dataclasses
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from lnn_core.aws.usage import MIB
from lnn_core.errors import LnnInputError
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol.layout import CHECKPOINT_EVERY
from lnn_core.protocol.round_steps import reduces_in_shard
from lnn_core.protocol.schedule import AUTO_MAX_EPOCHS_PER_STEP

ALLOWED_ARRAYS = (
    "X",
    "y",
    "X_test",
    "y_test",
    "classes",
    "example_shape",
)  # the arrays LNN reads; anything else is refused
MAX_PARAMETERS_BYTES = 64 * 1024  # parameters.json; the LNN format needs well under 1 KB
HEADROOM = 0.5  # the launcher validates data in at most this share of its memory
RUNTIME_OVERHEAD_MB = 150  # Python, NumPy, boto3 and the handler code, resident before any data
LAMBDA_MAX_MEMORY_MB = 10240
LAMBDA_MIN_MEMORY_MB = 128
MEMORY_SIZE_STEP_MB = 64  # suggested memory sizes are rounded up to this
FLOAT64 = 8


# ---- sizes and environment ---------------------------------------------------------------------------------


def positive_int_from(environ: Mapping[str, str], name: str, default: int | None) -> int | None:
    """A positive integer (a memory size in MB, a count) from the environment variable `name` (`default` when
    unset or empty)."""
    raw = environ.get(name) or ""
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RuntimeError(f"environment variable {name} must be a whole number; got {raw!r}") from None
    if value < 1:
        raise RuntimeError(f"environment variable {name} must be positive; got {value}")
    return value


def data_budget_bytes(memory_mb: int) -> int:
    """The bytes a function with `memory_mb` may spend on loading data: its memory less `HEADROOM`."""
    return int(memory_mb * MIB * (1 - HEADROOM))


def megabytes(size: int) -> str:
    """1_234_567_890 -> '1,178 MB' (MiB, as Lambda counts memory)."""
    return f"{math.ceil(size / MIB):,} MB"


def check_object_size(size: int, *, limit: int, source: str, what: str, fix: str) -> None:
    """Raise when an object is larger than `limit` bytes, before anything downloads it."""
    if size > limit:
        raise LnnInputError(f"{what} {source} is {size:,} bytes, more than the {limit:,} allowed; {fix}")


# ---- .npz inspection ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrayHeader:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    member_bytes: int  # the zip member's declared uncompressed size, header included

    @property
    def float64_bytes(self) -> int:
        """Its size once converted to float64, as LNN holds every array."""
        return math.prod(self.shape) * FLOAT64


@dataclass(frozen=True)
class NpzLayout:
    """What an .npz declares: one header per array, and the total uncompressed size of its members."""

    arrays: dict[str, ArrayHeader]
    uncompressed_bytes: int

    @property
    def float64_bytes(self) -> int:
        return sum(header.float64_bytes for header in self.arrays.values())

    def shape(self, name: str) -> tuple[int, ...] | None:
        header = self.arrays.get(name)
        return header.shape if header else None

    def load_peak_bytes(self, compressed_bytes: int) -> int:
        """Loading holds the file's bytes, the arrays as stored and their float64 copies at once, at worst."""
        return compressed_bytes + self.uncompressed_bytes + self.float64_bytes


def inspect_npz(source_file: str | IO[bytes], *, source: str) -> NpzLayout:
    """Read an .npz's zip directory and .npy headers (not the data); raise `LnnInputError` for anything
    LNN would not load: another file type, an array LNN does not read, or a header that disagrees with its member."""
    try:
        with zipfile.ZipFile(source_file) as archive:
            members = archive.infolist()
            arrays = {}
            for member in members:
                name = _array_name(member.filename, source)
                if name in arrays:
                    raise LnnInputError(f"{source} holds the array {name!r} twice; save each array once")
                with archive.open(member) as stream:
                    arrays[name] = _read_header(stream, name, member.file_size, source)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        ValueError,
        RuntimeError,
        NotImplementedError,
    ) as error:  # RuntimeError: an encrypted member; NotImplementedError: a compression method
        if isinstance(error, LnnInputError):
            raise
        raise LnnInputError(f"{source} is not a readable .npz file ({error}); save it with numpy.savez") from None
    return NpzLayout(arrays, sum(member.file_size for member in members))


def _array_name(filename: str, source: str) -> str:
    name = filename.removesuffix(".npy")
    if name not in ALLOWED_ARRAYS or not filename.endswith(".npy"):
        member = f"the array {name!r}" if filename.endswith(".npy") else repr(filename)  # as numpy.savez named it
        raise LnnInputError(
            f"{source} holds {member}, which LNN does not read; save only the arrays {', '.join(ALLOWED_ARRAYS)}"
        )
    return name


def _read_header(stream: IO[bytes], name: str, member_bytes: int, source: str) -> ArrayHeader:
    version = npy_format.read_magic(stream)
    if version == (1, 0):
        shape, _fortran_order, dtype = npy_format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _fortran_order, dtype = npy_format.read_array_header_2_0(stream)
    else:
        raise LnnInputError(f"{source}: {name} is an .npy of format version {version}; save it with numpy.savez")
    if dtype.hasobject:
        raise LnnInputError(f"{source}: {name} holds Python objects (dtype {dtype}); save a numeric array")
    declared = math.prod(shape) * dtype.itemsize
    if stream.tell() + declared != member_bytes:
        raise LnnInputError(
            f"{source}: the header of {name} declares shape {shape} of {dtype} ({declared:,} bytes) but the file "
            f"holds {member_bytes - stream.tell():,} bytes of data; the file is damaged or forged, save it again"
        )
    return ArrayHeader(name, tuple(shape), dtype, member_bytes)


def check_npz_fits(layout: NpzLayout, *, compressed_bytes: int, memory_mb: int, source: str) -> None:
    """Raise when loading the .npz could take more than the data budget of a function with `memory_mb`."""
    budget = data_budget_bytes(memory_mb)
    peak = layout.load_peak_bytes(compressed_bytes)
    if peak > budget:
        detail = ", ".join(
            f"{header.name} {'x'.join(map(str, header.shape)) or 'scalar'}" for header in layout.arrays.values()
        )
        raise LnnInputError(
            f"{source} needs about {megabytes(peak)} to load ({detail}; {megabytes(layout.uncompressed_bytes)} "
            f"uncompressed), more than the {megabytes(budget)} allowed for data with {memory_mb} MB of memory; "
            f"use less data or deploy with -c memory_size={suggest_memory_size(peak / (1 - HEADROOM))}"
        )


# ---- one training step -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepEstimate:
    """Peak memory of one full training step (a whole epoch: the largest granularity), in bytes by part."""

    data: int
    activations: int
    working: int
    parameters: int
    overhead: int

    @property
    def total(self) -> int:
        return self.data + self.activations + self.working + self.parameters + self.overhead


def estimate_step_memory(
    examples: int,
    features: int,
    neurons: Sequence[int],
    *,
    test_examples: int = 0,
    optimizer_copies: int = 0,
    overhead_mb: int = RUNTIME_OVERHEAD_MB,
    itemsize: int = FLOAT64,
) -> StepEstimate:
    """Estimate the peak memory of one forward and backward pass over all `examples`, every array of `itemsize` bytes
    (the run's dtype: 8 for float64, 4 for float32) but the labels, which stay float64.

    data: X as rows and as columns (the trainer keeps both), the targets Y (n_L x m), the labels, and the test set.
    activations: A and Z of every layer (m x n_l each). working: the temporaries alive at once, at worst dZ and
    dA_prev of the widest layer pair in the backward pass (layer 1 has no dA_prev: it is never computed) plus one
    widest-layer temporary (`W @ A` before `+ b`). parameters: W and b, their gradients, the updated copy and
    `optimizer_copies` more (adam: 2). Measured once with tracemalloc (20,000 x 784, 784-128-64-10): the estimate
    less overhead is within a few per cent of the traced peak; again in both dtypes (loading, columns, targets and
    one epoch): traced 179 MB in float32 and 355 MB in float64, estimated 177 and 354 MB.
    """
    layer_sizes = [features, *neurons]
    m = examples
    data = (2 * m * features + m * neurons[-1] + test_examples * features) * itemsize + (m + test_examples) * FLOAT64
    activations = sum(2 * m * n for n in neurons) * itemsize
    backward = max([neurons[0], *(n + previous for previous, n in zip(neurons, neurons[1:]))])
    working = m * (backward + max(neurons)) * itemsize
    weights = sum(n * previous + n for previous, n in zip(layer_sizes, layer_sizes[1:])) * itemsize
    parameters = weights * (3 + optimizer_copies)
    return StepEstimate(data, activations, working, parameters, overhead_mb * MIB)


def suggest_memory_size(needed_bytes: float) -> int:
    """The Lambda memory size (MB) to deploy with for `needed_bytes`: rounded up to `MEMORY_SIZE_STEP_MB`."""
    megabytes_needed = math.ceil(needed_bytes / MIB / MEMORY_SIZE_STEP_MB) * MEMORY_SIZE_STEP_MB
    return max(LAMBDA_MIN_MEMORY_MB, megabytes_needed)


def check_step_fits(estimate: StepEstimate, *, memory_mb: int, shape: str) -> None:
    """Raise when one training step of `shape` (e.g. '60000 x 784, network 784-128-64-10') needs more than
    `memory_mb`."""
    needed = estimate.total
    if needed <= memory_mb * MIB:
        return
    size = suggest_memory_size(needed)
    fix = (
        f"deploy with -c memory_size={size}"
        if size <= LAMBDA_MAX_MEMORY_MB
        else f"that is more than Lambda's {LAMBDA_MAX_MEMORY_MB} MB; use fewer examples or a smaller network"
    )
    raise LnnInputError(
        f"one training step of {shape} needs about {megabytes(needed)} but the trainer has {memory_mb} MB; {fix}"
    )


def step_shape(examples: int, features: int, neurons: Sequence[int], test_examples: int = 0) -> str:
    test = f" (+{test_examples:,} test)" if test_examples else ""
    return f"{examples:,} x {features:,} examples{test} with network {'-'.join(map(str, (features, *neurons)))}"


def parameter_copies(config: TrainingConfig, layout: NpzLayout) -> int:
    """Copies of the parameters a step holds besides W, b, their gradients and the update: the optimizer's state
    (momentum 1, adam 2), the training state serialized (a buffer and its bytes, state included), at `auto`
    granularity the checkpoint states kept until the commit (one per 100 epochs of a step). With workers, the
    largest of a round's roles: a shard holds the K parameter slices and their bytes beside the assembled
    parameters, and its sums packed; a round's commit, at a checkpoint, the slices and the assembled whole of the
    parameters and the optimizer state, and that state serialized (a slice holds about 1 / K of these); a shard
    that reduces its round (`reduces_in_shard`, for the features of `layout`'s X) every shard's sums and the
    training state before and after the update."""
    optimizer = {"gd": 0, "momentum": 1, "adam": 2}[config.optimizer]
    serialized = 2 * (1 + optimizer)
    if config.workers > 1:
        copies = max(3, 1 + 2 * optimizer + serialized)
        X = layout.shape("X")
        if X is not None and len(X) == 2 and reduces_in_shard(config, X[1]):
            copies = max(copies, config.workers + 2 * (1 + optimizer) + serialized)
        return copies
    kept = (
        min(config.epochs, AUTO_MAX_EPOCHS_PER_STEP) // CHECKPOINT_EVERY * (1 + optimizer)
        if config.granularity == "auto"
        else 0
    )
    return optimizer + serialized + kept


def value_bytes(config: TrainingConfig) -> int:
    """The bytes of one number of the run's data, training state and model: 8 for float64, 4 for float32."""
    return np.dtype(config.dtype).itemsize


def check_training_fits(
    layout: NpzLayout, neurons: Sequence[int], *, memory_mb: int, source: str, copies: int = 0, itemsize: int = FLOAT64
) -> StepEstimate:
    """The step estimate for an .npz's declared shapes and a network (with `copies` more of its parameters, see
    `parameter_copies`, and numbers of `itemsize` bytes, see `value_bytes`); raise when it does not fit `memory_mb`."""
    X, X_test = layout.shape("X"), layout.shape("X_test")
    if X is None or len(X) != 2:
        return estimate_step_memory(0, 0, neurons)  # the data checks name this problem
    test_examples = X_test[0] if X_test is not None and len(X_test) == 2 else 0
    estimate = estimate_step_memory(
        X[0], X[1], neurons, test_examples=test_examples, optimizer_copies=copies, itemsize=itemsize
    )
    check_step_fits(estimate, memory_mb=memory_mb, shape=step_shape(X[0], X[1], neurons, test_examples))
    return estimate


def part_worker_bytes(
    layout: NpzLayout,
    *,
    compressed_bytes: int,
    step: StepEstimate,
    common: NpzLayout,
    common_compressed_bytes: int,
) -> int:
    """The most a shard worker holds at once for its part, beside the run's other parts it may keep cached: its
    step (`step`); or, at worst, what the step keeps of data (`step.data`) while it loads its part, or the common
    arrays (each file's bytes, its arrays as stored and as float64, and their float64 columns); with the runtime."""
    runtime = RUNTIME_OVERHEAD_MB * MIB

    def loading(npz: NpzLayout, size: int) -> int:
        return npz.load_peak_bytes(size) + npz.float64_bytes

    return max(
        step.total,
        runtime + step.data + loading(layout, compressed_bytes),
        runtime + step.data + loading(common, common_compressed_bytes),
    )


def check_part_fits(
    layout: NpzLayout,
    *,
    compressed_bytes: int,
    examples: int,
    neurons: Sequence[int],
    memory_mb: int,
    source: str,
    copies: int = 0,
    test_examples: int = 0,
    itemsize: int = FLOAT64,
) -> StepEstimate:
    """A part of training data in parts (see protocol/layout) as its shard worker holds it: loading it must fit the
    data budget of `memory_mb` (`check_npz_fits`), and its step all of it: the estimate over its own examples and
    the test set (the reduce and the finish hold it) in numbers of `itemsize` bytes (`value_bytes`), plus what is
    kept for all `examples` of the run: the epoch's shuffled order and its mini-batches (an int64 each) and, at the
    finish, every example's outputs, targets and label ((2 n_L + 1) float64)."""
    check_npz_fits(layout, compressed_bytes=compressed_bytes, memory_mb=memory_mb, source=source)
    rows, features = layout.shape("X")
    estimate = estimate_step_memory(
        rows, features, neurons, test_examples=test_examples, optimizer_copies=copies, itemsize=itemsize
    )
    estimate = dataclasses.replace(estimate, data=estimate.data + examples * (2 + 2 * neurons[-1] + 1) * FLOAT64)
    check_step_fits(
        estimate,
        memory_mb=memory_mb,
        shape=f"{source} ({rows:,} of {examples:,} examples in parts) with network "
        f"{'-'.join(map(str, (features, *neurons)))}" + (f" (+{test_examples:,} test)" if test_examples else ""),
    )
    return estimate
