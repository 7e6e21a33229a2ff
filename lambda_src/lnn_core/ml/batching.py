"""Mini-batches: how many, which examples each holds in an epoch, and their columns.

Examples are columns as in network.py: A (n, m)."""

import numpy as np

from lnn_core.errors import LnnInputError

Batch = np.ndarray | slice  # the example (column) indices of one mini-batch


# --- full batch --------------------------------------------------------------------------------


def check_batch_size(m: int, batch_size: int | None) -> None:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise LnnInputError(f"the number of examples m must be a positive integer; got {m!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
    ):
        raise LnnInputError(f"batch_size must be a positive integer or None (the whole set); got {batch_size!r}")


def batch_count(m: int, batch_size: int | None) -> int:
    """The number of mini-batches of m examples: 1 when batch_size is None or >= m, else ceil(m / batch_size)."""
    check_batch_size(m, batch_size)
    if batch_size is None or batch_size >= m:
        return 1
    return -(-m // batch_size)


def minibatches(m: int, batch_size: int | None, shuffle_seed: int | None, epoch: int) -> list[Batch]:
    """The example indices of each mini-batch of epoch `epoch` (counting from 1), in order.

    batch_size None or >= m: one batch, [slice(0, m)], the whole set as is (no shuffle; shuffle_seed
    is then not used). Otherwise order = numpy.random.RandomState(shuffle_seed + epoch).permutation(m)
    and the batches are order[0:batch_size], order[batch_size:2 * batch_size], ... (int arrays, the
    last one possibly smaller): every example once per epoch, a new order each epoch.
    """
    check_batch_size(m, batch_size)
    if batch_size is None or batch_size >= m:
        return [slice(0, m)]
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 1:
        raise LnnInputError(f"epoch counts from 1; got {epoch!r}")
    if (
        isinstance(shuffle_seed, bool)
        or not isinstance(shuffle_seed, (int, np.integer))
        or not 0 <= shuffle_seed + epoch < 2**32
    ):
        raise LnnInputError(
            f"mini-batches need an integer shuffle_seed with 0 <= shuffle_seed + epoch < 2**32; got {shuffle_seed!r}"
        )
    order = np.random.RandomState(int(shuffle_seed + epoch)).permutation(m)
    return [order[start : start + batch_size] for start in range(0, m, batch_size)]


def batch_columns(A: np.ndarray, batch: Batch) -> np.ndarray:
    """The batch's columns of A (n, m) (X_cols or Y): (n, m_b), C-contiguous; A itself for a slice of all m.

    One fixed memory layout keeps the matrix products, and so the results, identical wherever the
    same batch enters the network (as in `to_columns`).
    """
    part = A[:, batch]
    if isinstance(batch, slice) and part.shape == A.shape:
        return A
    return np.ascontiguousarray(part)
