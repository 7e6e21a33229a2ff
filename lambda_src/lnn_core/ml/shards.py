"""Data-parallel training in pure NumPy: one mini-batch split across K shard workers, their sums reduced in order.

A round is one update. Shard i takes a contiguous slice of the batch's examples (the first m_b % K shards one
example more; with the data in K parts, the batch's examples in part i: `part_batch`), computes forward and backward
over it from the committed parameters, and returns its gradient sums and its loss sum, not yet divided by the batch
size. The reduce adds the K results in shard order 0, 1, ..., K - 1, divides by m_b, adds the L2 term, and hands the
gradients to the optimizer. The Lambda engine runs the same functions (a shard per invocation), so a run with K
workers equals `train_epoch_sharded` bit for bit; against K = 1 only the order of summation differs."""

from collections.abc import Iterable, Sequence

import numpy as np

from lnn_core.ml import batching, network, optimizers

ShardResult = tuple[network.Params, float]  # gradient sums {"dW1": ..., "db1": ...} and the loss sum


def shard_slices(batch_examples: int, shards: int) -> list[slice]:
    """Contiguous slices of a batch of `batch_examples`, one per shard, their sizes differing by at most 1."""
    base, extra = divmod(batch_examples, shards)
    bounds = np.cumsum([0] + [base + (1 if index < extra else 0) for index in range(shards)])
    return [slice(int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:])]


def shard_columns(A_batch: np.ndarray, part: slice) -> np.ndarray:
    """A shard's columns of a batch array (n, m_b) -> (n, m_i), C-contiguous: one layout wherever it is computed."""
    return np.ascontiguousarray(A_batch[:, part])


def shard_sums(
    params: network.Params, X_shard: np.ndarray, Y_shard: np.ndarray, activations: Sequence[str]
) -> ShardResult:
    """X_shard (n0, m_i), Y_shard (n_L, m_i) -> (gradient sums over the shard's examples, their loss sum)."""
    AL, caches = network.forward_pass(params, X_shard, activations)
    loss = network.loss_sum(AL, Y_shard, activations[-1])
    dZ = network.output_delta(AL, Y_shard, activations[-1])
    sums: network.Params = {}
    for layer in range(len(caches), 0, -1):
        A_prev = caches[layer - 1][0]
        sums[f"dW{layer}"] = dZ @ A_prev.T
        sums[f"db{layer}"] = dZ.sum(axis=1, keepdims=True)
        if layer > 1:
            dZ = network.hidden_delta(params[f"W{layer}"].T @ dZ, caches[layer - 2][1], activations[layer - 2])
    return sums, loss


def combine_shards(
    params: network.Params, results: Iterable[ShardResult], batch_examples: int, l2: float = 0.0
) -> tuple[network.Params, float]:
    """The batch's gradients and cost sum from its shards' results, added in shard order as they come (one result
    in memory at a time): dW = (((dW_0 + dW_1) + ...) / m_b (+ (l2 / m_b) W), db likewise;
    cost sum = ((0.0 + loss_0) + loss_1) + ... (+ l2_penalty)."""
    totals: network.Params = {}
    cost_sum = 0.0
    for sums, loss in results:
        totals = {name: (totals[name] + value if totals else value) for name, value in sums.items()}
        cost_sum += loss
    grads: network.Params = {}
    for name, total in totals.items():
        grads[name] = total / batch_examples
        if l2 != 0 and name.startswith("dW"):
            grads[name] = grads[name] + (float(l2) / batch_examples) * params[name[1:]]
    if l2 != 0:
        cost_sum = cost_sum + network.l2_penalty(params, l2)
    return grads, cost_sum


def train_epoch_sharded(
    params: network.Params,
    opt_state: optimizers.State,
    X_cols: np.ndarray,
    Y: np.ndarray,
    *,
    workers: int,
    activations: Sequence[str],
    batches: Sequence[batching.Batch],
    learning_rate: float,
    l2: float = 0.0,
    **optimizer_settings,
) -> tuple[network.Params, optimizers.State, float]:
    """`training.train_epoch` with every batch computed by `workers` shards and reduced in shard order."""
    total = 0.0
    for batch in batches:
        X_batch, Y_batch = batching.batch_columns(X_cols, batch), batching.batch_columns(Y, batch)
        parts = shard_slices(X_batch.shape[1], workers)
        results = [
            shard_sums(params, shard_columns(X_batch, part), shard_columns(Y_batch, part), activations)
            for part in parts
        ]
        grads, cost_sum = combine_shards(params, results, X_batch.shape[1], l2)
        params, opt_state = optimizers.update(
            params, grads, opt_state, learning_rate=learning_rate, **optimizer_settings
        )
        total += cost_sum
    return params, opt_state, total / X_cols.shape[1]


# ---- data in parts -------------------------------------------------------------------------------------------
# With the training data in K parts (part k: rows start_k .. stop_k - 1 of the one file they were split from), the
# mini-batches are those of the whole set (`batching.minibatches` over all m examples), and shard k of a round is
# the batch's examples that part k holds, in the batch's order: the worker of part k needs only its part.


def part_bounds(part_examples: Sequence[int]) -> list[slice]:
    """The rows of the whole training set that each part holds, in order:
    [slice(0, m_0), slice(m_0, m_0 + m_1), ...]."""
    bounds = np.cumsum([0, *part_examples])
    return [slice(int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:])]


def part_batch(batch: batching.Batch, rows: slice) -> batching.Batch:
    """A mini-batch's examples that the part of `rows` holds, as the part's own column indices, in the batch's order
    (none: an empty array); the whole part for the whole-set batch (a slice)."""
    if isinstance(batch, slice):
        return slice(0, rows.stop - rows.start)
    return batch[(batch >= rows.start) & (batch < rows.stop)] - rows.start


def batch_examples(batch: batching.Batch, examples: int) -> int:
    """The number of examples of a mini-batch of a set of `examples` (a slice of them all, or an index array)."""
    return len(range(examples)[batch]) if isinstance(batch, slice) else len(batch)


def train_epoch_parts(
    params: network.Params,
    opt_state: optimizers.State,
    X_cols: np.ndarray,
    Y: np.ndarray,
    *,
    part_examples: Sequence[int],
    activations: Sequence[str],
    batches: Sequence[batching.Batch],
    learning_rate: float,
    l2: float = 0.0,
    **optimizer_settings,
) -> tuple[network.Params, optimizers.State, float]:
    """`train_epoch_sharded` with the data in parts of `part_examples` examples (the columns of X_cols in order):
    shard k of every batch is `part_batch` of part k, taken from that part's own columns as its worker holds them."""
    parts = [
        (np.ascontiguousarray(X_cols[:, rows]), np.ascontiguousarray(Y[:, rows])) for rows in part_bounds(part_examples)
    ]
    rows_of = part_bounds(part_examples)
    total = 0.0
    for batch in batches:
        results = []
        for (X_part, Y_part), rows in zip(parts, rows_of):
            local = part_batch(batch, rows)
            results.append(
                shard_sums(
                    params, batching.batch_columns(X_part, local), batching.batch_columns(Y_part, local), activations
                )
            )
        grads, cost_sum = combine_shards(params, results, batch_examples(batch, X_cols.shape[1]), l2)
        params, opt_state = optimizers.update(
            params, grads, opt_state, learning_rate=learning_rate, **optimizer_settings
        )
        total += cost_sum
    return params, opt_state, total / X_cols.shape[1]
