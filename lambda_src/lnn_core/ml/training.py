"""Training in pure NumPy: mini-batches, the epoch as an exact sequence of network.py's operations, the reference loop.

Examples are columns as in network.py, X_cols (n0, m) and Y (n_L, m), except in `train_reference` and
`train_reference_state`, which take ROWS: X (m, n0) and labels y (m,) (or real targets (m,) or (m, k)).

The Lambda engine runs one layer per invocation and must reproduce `gradient_descent_epoch` bit
for bit, so one epoch is exactly this sequence of floating-point operations:

    A_l, Z_l = layer_forward(A_{l-1}, W_l, b_l, act_l)              for l = 1..L
    cost = compute_cost(A_L, Y, act_L)
    dZ_L = output_delta(A_L, Y, act_L)
    for l = L..2:
        dA_{l-1}, dW_l, db_l = layer_backward(dZ_l, A_{l-1}, W_l)
        dZ_{l-1} = hidden_delta(dA_{l-1}, Z_{l-1}, act_{l-1})
    dW_1, db_1 = weight_gradients(dZ_1, A_0, W_1)                     # no dA_0: nothing reads it
    params = apply_update(params, grads, learning_rate)

That is `gradient_descent_epoch`: one full batch, plain gradient descent, no L2. The general epoch,
`train_epoch`, used for mini-batches, L2 (l2 = lambda) and the optimizers of optimizers.py, is this
sequence (m = the number of examples, m_b = the batch's; with one batch, "gd" and l2 == 0 it is the
sequence above bit for bit, since compute_cost == loss_sum / m and optimizers' gd == apply_update):

    total = 0.0
    for batch in minibatches(m, batch_size, shuffle_seed, epoch):       # epoch counts from 1
        A_0, Y_b = batch_columns(X_cols, batch), batch_columns(Y, batch)
        A_l, Z_l = layer_forward(A_{l-1}, W_l, b_l, act_l)              for l = 1..L
        total += batch_cost_sum(A_L, Y_b, act_L, params, l2)   # loss_sum [+ l2_penalty(params, l2) if l2 != 0]
        dZ_L = output_delta(A_L, Y_b, act_L)
        for l = L..2:
            dA_{l-1}, dW_l, db_l = layer_backward(dZ_l, A_{l-1}, W_l, l2)    # + (l2 / m_b) * W_l if l2 != 0
            dZ_{l-1} = hidden_delta(dA_{l-1}, Z_{l-1}, act_{l-1})
        dW_1, db_1 = weight_gradients(dZ_1, A_0, W_1, l2)
        params, opt_state = optimizers.update(params, grads, opt_state, optimizer=..., learning_rate=..., ...)
    cost = total / m

With L2 a batch's own cost is (loss_sum_b + (l2 / 2) * sum_l ||W_l||_F^2) / m_b, whose gradient is
dW_l + (l2 / m_b) * W_l; the epoch's cost adds up each batch's loss_sum_b + (l2 / 2) * sum_l ||W_l||^2
(with the W of that batch's forward pass, before its update) and divides by m.
"""

import functools
from collections.abc import Sequence

import numpy as np

from lnn_core.errors import LnnInputError
from lnn_core.ml import optimizers
from lnn_core.ml.batching import Batch, batch_columns, check_batch_size, minibatches
from lnn_core.ml.network import (
    Params,
    apply_update,
    backward_pass,
    batch_cost_sum,
    compute_cost,
    forward_pass,
    init_params,
    targets,
    to_columns,
    validate_architecture,
)
from lnn_core.ml.shards import train_epoch_parts, train_epoch_sharded
from lnn_core.ml.validation import split_indices


def gradient_descent_epoch(
    params: Params, X_cols: np.ndarray, Y: np.ndarray, activations: Sequence[str], learning_rate: float
) -> tuple[Params, float]:
    """One full-batch step on X_cols (n0, m), Y (n_L, m) -> (new params, cost before the update)."""
    AL, caches = forward_pass(params, X_cols, activations)
    cost = compute_cost(AL, Y, activations[-1])
    grads = backward_pass(params, caches, AL, Y, activations)
    return apply_update(params, grads, learning_rate), cost


# --- the general epoch ---------------------------------------------------------


def batch_step(
    params: Params,
    opt_state: optimizers.State,
    X_batch: np.ndarray,
    Y_batch: np.ndarray,
    *,
    activations: Sequence[str],
    learning_rate: float,
    l2: float = 0.0,
    **optimizer_settings,
) -> tuple[Params, optimizers.State, float]:
    """One mini-batch X_batch (n0, m_b), Y_batch (n_L, m_b) -> (new params, new opt_state, batch_cost_sum).

    forward_pass, batch_cost_sum (before the update), backward_pass with l2, optimizers.update (with
    `optimizer_settings`: optimizer, beta, beta1, beta2, epsilon).
    """
    AL, caches = forward_pass(params, X_batch, activations)
    cost_sum = batch_cost_sum(AL, Y_batch, activations[-1], params, l2)
    grads = backward_pass(params, caches, AL, Y_batch, activations, l2)
    new_params, new_state = optimizers.update(
        params, grads, opt_state, learning_rate=learning_rate, **optimizer_settings
    )
    return new_params, new_state, cost_sum


def train_epoch(
    params: Params,
    opt_state: optimizers.State,
    X_cols: np.ndarray,
    Y: np.ndarray,
    *,
    activations: Sequence[str],
    batches: Sequence[Batch],
    learning_rate: float,
    l2: float = 0.0,
    **optimizer_settings,
) -> tuple[Params, optimizers.State, float]:
    """One epoch over X_cols (n0, m), Y (n_L, m) -> (new params, new opt_state, the epoch's cost).

    `batches` (from `minibatches`) split the m examples; each is a `batch_step` in order. The cost
    is the sum of the batches' batch_cost_sum (each from its own forward pass, before its update),
    accumulated from 0.0 in batch order, divided by m: with L2, sum_b (loss_sum_b + (l2 / 2)
    sum_l ||W_l||^2) / m. With one batch, "gd" and l2 == 0 this is `gradient_descent_epoch` bit for bit.
    """
    if X_cols.shape[1] != Y.shape[1]:
        raise LnnInputError(f"X_cols has {X_cols.shape[1]} examples but Y has {Y.shape[1]}")
    total = 0.0
    for batch in batches:
        params, opt_state, cost_sum = batch_step(
            params,
            opt_state,
            batch_columns(X_cols, batch),
            batch_columns(Y, batch),
            activations=activations,
            learning_rate=learning_rate,
            l2=l2,
            **optimizer_settings,
        )
        total += cost_sum
    return params, opt_state, total / X_cols.shape[1]


# --- the reference loop ------------------------------------------------------------------------


def train_reference(X: np.ndarray, y: np.ndarray, **options) -> tuple[Params, list[float]]:
    """The plain NumPy loop: X (m, n0) rows (used as given, not scaled), y (m,) labels (or (m, k) targets).

    Returns the trained params and the cost of each epoch (before its update); the options are those of
    `train_reference_state` (their defaults are full-batch gradient descent without L2, every mode's original
    behaviour).
    """
    params, costs, _ = train_reference_state(X, y, **options)
    return params, costs


def train_reference_state(
    X: np.ndarray,
    y: np.ndarray,
    *,
    neurons: Sequence[int],
    activations: Sequence[str],
    learning_rate: float,
    epochs: int,
    init: str = "lecun",
    seed: int | None = None,
    batch_size: int | None = None,
    shuffle_seed: int | None = None,
    optimizer: str = "gd",
    beta: float = optimizers.DEFAULT_BETA,
    beta1: float = optimizers.DEFAULT_BETA1,
    beta2: float = optimizers.DEFAULT_BETA2,
    epsilon: float = optimizers.DEFAULT_EPSILON,
    l2: float = 0.0,
    threshold: float | None = None,
    workers: int = 1,
    parts: Sequence[int] | None = None,
    validation_split: float = 0.0,
    validation_seed: int = 0,
    dtype: str = "float64",
) -> tuple[Params, list[float], optimizers.State]:
    """`train_reference`, also returning the optimizer state after the last update -> (params, costs, opt_state).

    Epoch e = 1, 2, ... is train_epoch over minibatches(m, batch_size, shuffle_seed, e) from
    init_params(..., init, seed) and optimizers.init_state(params, optimizer).
    batch_size: None (or >= m) is the whole set, unshuffled. shuffle_seed: None means `seed`, and 0
    when seed is None too. optimizer: "gd", "momentum" (beta) or "adam" (beta1, beta2, epsilon).
    l2: lambda of the L2 term (0 is none). threshold: stop after the first epoch whose cost is below
    it; the costs then end with that epoch's. workers: K shard workers per update (`shards`). parts: the data in
    `workers` parts of these many examples, the rows of X in order (`shards.train_epoch_parts`); None: one data file.
    validation_split: the fraction of the rows held out (as a run holds them out, `validation.split_indices` with
    validation_seed); it trains on the rest. A run on parts holds none out. dtype: "float64" or "float32", what X,
    the targets, the parameters and every array of the epoch are (X and y rounded once from float64 to it, as the
    trainer's data).
    """
    if validation_split and parts is not None:
        raise LnnInputError("a run on data in parts holds out no validation rows: set validation_split to 0")
    if validation_split:
        training_rows, _ = split_indices(len(X), validation_split, validation_seed)
        X, y = X[training_rows], y[training_rows]
    X_cols = to_columns(X, dtype)
    validate_architecture(X_cols.shape[0], neurons, activations)
    if epochs < 0 or not learning_rate > 0:
        raise LnnInputError(f"need epochs >= 0 and learning_rate > 0; got {epochs!r} and {learning_rate!r}")
    optimizers.check_settings(optimizer, learning_rate, beta, beta1, beta2, epsilon)
    if not (np.isfinite(l2) and l2 >= 0):
        raise LnnInputError(f"l2 must be a finite number >= 0; got {l2!r}")
    if threshold is not None and np.isnan(threshold):
        raise LnnInputError("threshold must be a number or None, not NaN")
    Y = targets(y, activations[-1], neurons[-1], dtype)
    m = X_cols.shape[1]
    if Y.shape[1] != m:
        raise LnnInputError(f"X has {m} rows but there are {Y.shape[1]} labels")
    check_batch_size(m, batch_size)
    if parts is not None and (len(parts) != workers or sum(parts) != m or min(parts) < 1):
        raise LnnInputError(
            f"parts must be {workers} (workers) positive numbers of examples adding up to {m}; got {parts!r}"
        )
    if shuffle_seed is None:
        shuffle_seed = 0 if seed is None else seed
    params = init_params([X_cols.shape[0], *neurons], init, seed, dtype)
    opt_state = optimizers.init_state(params, optimizer)
    costs: list[float] = []

    for epoch in range(1, epochs + 1):
        epoch_step = train_epoch if workers == 1 else functools.partial(train_epoch_sharded, workers=workers)
        if parts is not None:
            epoch_step = functools.partial(train_epoch_parts, part_examples=parts)
        params, opt_state, cost = epoch_step(
            params,
            opt_state,
            X_cols,
            Y,
            activations=activations,
            batches=minibatches(m, batch_size, shuffle_seed, epoch),
            learning_rate=learning_rate,
            optimizer=optimizer,
            beta=beta,
            beta1=beta1,
            beta2=beta2,
            epsilon=epsilon,
            l2=l2,
        )
        costs.append(cost)
        if threshold is not None and cost < threshold:
            break
    return params, costs, opt_state
