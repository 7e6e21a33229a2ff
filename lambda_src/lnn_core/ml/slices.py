"""The reduce of a data-parallel round in K "slice" steps, in pure NumPy.

Slice j owns the row blocks `shards.shard_slices(n_l, K)[j]` of every layer l = 1..L: of W_l (n_l, n_{l-1}),
b_l (n_l, 1), their gradients and their optimizer moments (v_W<l>, s_b<l>, ...). Every step of the reduce
(the ordered sum of the K shards' sums, / m_b, the L2 term, `optimizers.update`) is elementwise, so slice j's
step on its blocks gives exactly the rows of the whole computation: `assemble` of the K slices' results equals
`shards.combine_shards` + `optimizers.update` bit for bit. A slice may own no row of a layer (K > n_l): its
blocks there are (0, n_{l-1}) and (0, 1) arrays.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from lnn_core.ml import network, shards

_LAYER = re.compile(r"\d+$")


def layer_rows(neurons: Sequence[int], slices: int, j: int) -> list[slice]:
    """The rows of layer l = 1..L owned by slice j: shards.shard_slices(neurons[l - 1], slices)[j];
    neurons = (n_1, ..., n_L), without the input."""
    if slices < 1 or not 0 <= j < slices:
        raise ValueError(f"slice {j!r} of {slices!r}: need slices >= 1 and 0 <= j < slices")
    return [shards.shard_slices(int(n), slices)[j] for n in neurons]


def take_slice(arrays: Mapping[str, np.ndarray], neurons: Sequence[int], slices: int, j: int) -> dict[str, np.ndarray]:
    """Slice j's row block of every array named by a layer (W<l>, b<l>, dW<l>, v_W<l>, s_b<l>, ...: the layer is
    the trailing integer of the name): (n_l, k) -> (|rows_l(j)|, k), a C-contiguous copy. A 0-d array (adam's "t")
    is copied whole. Keys in the order of `arrays`."""
    rows = layer_rows(neurons, slices, j)
    blocks: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.ndim == 0:
            blocks[name] = value.copy()
            continue
        match = _LAYER.search(name)
        layer = int(match.group()) if match else 0
        if not 1 <= layer <= len(neurons):
            raise ValueError(f"{name!r} names no layer 1..{len(neurons)} (its layer is its trailing integer)")
        if value.shape[0] != neurons[layer - 1]:
            raise ValueError(f"{name!r} has {value.shape[0]} rows; layer {layer} has {neurons[layer - 1]}")
        blocks[name] = np.array(value[rows[layer - 1]], order="C", copy=True)
    return blocks


def assemble(blocks: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The inverse of take_slice over j = 0..K-1: each name's K blocks concatenated on axis 0 in slice order.
    A 0-d array must be equal in every block (else ValueError naming it) and is taken from block 0.
    Keys in block 0's order; every block must have the same keys."""
    if not blocks:
        raise ValueError("nothing to assemble: no blocks")
    names = list(blocks[0])
    for index, block in enumerate(blocks):
        if set(block) != set(names):
            raise ValueError(f"block {index} has keys {sorted(block)}; block 0 has {sorted(names)}")
    whole: dict[str, np.ndarray] = {}
    for name in names:
        first = np.asarray(blocks[0][name])
        if first.ndim == 0:
            for index, block in enumerate(blocks):
                other = np.asarray(block[name])
                if other.shape != () or other.dtype != first.dtype or not np.array_equal(other, first):
                    raise ValueError(f"{name!r} differs between blocks: {first!r} in block 0, {other!r} in {index}")
            whole[name] = first.copy()
        else:
            whole[name] = np.concatenate([block[name] for block in blocks], axis=0)
    return whole


@dataclass(frozen=True)
class SumsLayout:
    """Where slice j of one shard's gradient sums lies in its two flat objects.

    A shard's sums (dW_l (n_l, n_{l-1}), db_l (n_l, 1) for l = 1..L) are written slice-major: for j = 0..K-1,
    for l = 1..L, the raw C-order bytes of dW_l[rows_l(j)] then db_l[rows_l(j)]. Slices 0..h-1 go in object 0
    and h..K-1 in object 1, h = (K + 1) // 2: a slice is one contiguous range of one object (with K = 1,
    object 1 is empty, b"")."""

    shapes: tuple[tuple[int, int], ...]  # W shapes (n_l, n_{l-1}), l = 1..L
    slices: int
    dtype: str  # "float64" or "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shapes", tuple((int(rows), int(cols)) for rows, cols in self.shapes))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        if not self.shapes or self.slices < 1 or self.dtype not in network.DTYPES:
            raise ValueError(f"a layout needs layers, slices >= 1 and a dtype of {network.DTYPES}; got {self!r}")

    @classmethod
    def of(cls, params_or_shapes, slices: int, dtype) -> "SumsLayout":
        """From a params dict {"W1": (n_1, n_0), "b1", ...} (its W shapes) or the W shapes themselves."""
        if isinstance(params_or_shapes, Mapping):
            count = sum(1 for name in params_or_shapes if re.fullmatch(r"W\d+", name))
            shapes = [np.shape(params_or_shapes[f"W{l}"]) for l in range(1, count + 1)]
        else:
            shapes = list(params_or_shapes)
        return cls(tuple(shapes), int(slices), dtype)

    @property
    def neurons(self) -> tuple[int, ...]:
        """(n_1, ..., n_L)."""
        return tuple(rows for rows, _ in self.shapes)

    def _split(self) -> int:
        return (self.slices + 1) // 2

    @cached_property
    def _sizes(self) -> tuple[int, ...]:
        """The byte size of every slice j = 0..K-1: itemsize * sum_l |rows_l(j)| * (n_{l-1} + 1) (computed once)."""
        itemsize = np.dtype(self.dtype).itemsize
        return tuple(
            itemsize * sum(len(range(n)[rows]) * (cols + 1) for rows, (n, cols) in zip(self._rows(j), self.shapes))
            for j in range(self.slices)
        )

    def _rows(self, j: int) -> list[slice]:
        return layer_rows(self.neurons, self.slices, j)

    def range(self, j: int) -> tuple[int, int, int]:
        """(object 0 or 1, start byte, stop byte) of slice j; an empty slice has start == stop."""
        if not 0 <= j < self.slices:
            raise ValueError(f"slice {j!r} of {self.slices}: need 0 <= j < slices")
        sizes, h = self._sizes, self._split()
        obj, first = (0, 0) if j < h else (1, h)
        start = sum(sizes[first:j])
        return obj, start, start + sizes[j]

    def object_sizes(self) -> tuple[int, int]:
        """The byte sizes of objects 0 and 1."""
        sizes, h = self._sizes, self._split()
        return sum(sizes[:h]), sum(sizes[h:])


def pack_sums(sums: Mapping[str, np.ndarray], layout: SumsLayout) -> tuple[bytes, bytes]:
    """The two objects of a shard's sums {"dW1": (n_1, n_0), "db1": (n_1, 1), ...} (shard_sums's first result).
    The arrays must have the layout's shapes and dtype (a mismatch is a ValueError: nothing is converted)."""
    for layer, (n, cols) in enumerate(layout.shapes, start=1):
        for name, shape in ((f"dW{layer}", (n, cols)), (f"db{layer}", (n, 1))):
            value = sums[name]
            if value.dtype != np.dtype(layout.dtype) or value.shape != shape:
                raise ValueError(
                    f"{name} is {value.dtype} {value.shape}; the layout needs {layout.dtype} {shape}: not packed"
                )
    pieces = []
    for j in range(layout.slices):
        parts = []
        for layer, rows in enumerate(layer_rows(layout.neurons, layout.slices, j), start=1):
            parts += [sums[f"dW{layer}"][rows].tobytes(), sums[f"db{layer}"][rows].tobytes()]
        pieces.append(b"".join(parts))
    h = layout._split()
    return b"".join(pieces[:h]), b"".join(pieces[h:])


def unpack_slice(piece: bytes, layout: SumsLayout, j: int) -> dict[str, np.ndarray]:
    """Slice j's blocks {"dW1": (|rows_1(j)|, n_0), "db1": (|rows_1(j)|, 1), ...} from exactly the bytes of its
    range in its object (np.frombuffer: views of `piece`, read-only for bytes). A piece of the wrong length is a
    ValueError naming both lengths."""
    _, start, stop = layout.range(j)
    length = memoryview(piece).nbytes
    if length != stop - start:
        raise ValueError(f"slice {j}'s piece has {length} bytes; its range has {stop - start}")
    dtype = np.dtype(layout.dtype)
    blocks: dict[str, np.ndarray] = {}
    offset = 0
    for layer, (rows, (n, cols)) in enumerate(zip(layer_rows(layout.neurons, layout.slices, j), layout.shapes), 1):
        count = len(range(n)[rows])
        for name, width in ((f"dW{layer}", cols), (f"db{layer}", 1)):
            flat = np.frombuffer(piece, dtype=dtype, count=count * width, offset=offset)
            blocks[name] = flat.reshape(count, width)
            offset += count * width * dtype.itemsize
    return blocks


def combine_slice(
    params_block: Mapping[str, np.ndarray],
    pieces: Iterable[Mapping[str, np.ndarray]],
    batch_examples: int,
    l2: float = 0.0,
) -> dict[str, np.ndarray]:
    """Slice j's gradients from the K shards' blocks (unpack_slice's) in shard order, exactly as
    shards.combine_shards computes the whole: totals start from shard 0's values (not zeros: 0.0 + -0.0 is +0.0)
    and add each next shard's in turn; / batch_examples; plus (float(l2) / batch_examples) * W block for each dW
    when l2 != 0 (params_block: take_slice of the params). No cost here."""
    totals: dict[str, np.ndarray] = {}
    for sums in pieces:
        totals = {name: (totals[name] + value if totals else value) for name, value in sums.items()}
    if not totals:
        raise ValueError("no shard's blocks to combine")
    grads: dict[str, np.ndarray] = {}
    for name, total in totals.items():
        grads[name] = total / batch_examples
        if l2 != 0 and name.startswith("dW"):
            grads[name] = grads[name] + (float(l2) / batch_examples) * params_block[name[1:]]
    return grads
