"""A fully connected neural network in pure NumPy: init, per-layer forward/backward, cost, update, predict.

Inside this module examples are COLUMNS, as in the deeplearning.ai course: the input activations
A0 = X.T have shape (n0, m); layer l has W_l (n_l, n_{l-1}), b_l (n_l, 1) and Z_l, A_l (n_l, m).
At the public data interfaces (`predict_proba`, `predict`, `accuracy`, `rmse`, `r2`,
`train_reference`) examples are ROWS: X (m, n0) and labels y (m,) (0/1 for a sigmoid output, class
indices for softmax) or, for a linear (regression) output, real targets y (m,) or (m, k).

`activations` is always one name per layer, layer 1 first: hidden layers use HIDDEN_ACTIVATIONS,
the last layer an OUTPUT_ACTIVATIONS name (sigmoid with 1 unit, or softmax with >= 2 units) or a
REGRESSION_OUTPUTS name (linear with any number of units, squared error).

The Lambda engine runs one layer per invocation and must reproduce `gradient_descent_epoch` bit
for bit, so every function is deterministic, never mutates its inputs, and one epoch is exactly
this sequence of floating-point operations:

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

from . import optimizers
from .errors import LnnInputError

HIDDEN_ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")  # classification outputs (cross-entropy)
REGRESSION_OUTPUTS = ("linear",)  # squared error; not in OUTPUT_ACTIVATIONS, which config.py validates against
_OUTPUTS = OUTPUT_ACTIVATIONS + REGRESSION_OUTPUTS
INITIALIZERS = ("lecun", "he")

# Probabilities are clipped to [EPSILON, 1 - EPSILON] before the log in `loss_sum` (and so `compute_cost`).
EPSILON = 1e-15

Params = dict[str, np.ndarray]
Cache = tuple[np.ndarray, np.ndarray]  # (A_{l-1}, Z_l) of one layer
Batch = np.ndarray | slice  # the example (column) indices of one mini-batch


# --- validation --------------------------------------------------------------------------------


def _check_sizes(layer_sizes: Sequence[int]) -> None:
    """Every size must be a positive int; layer_sizes[0] is the input size n0."""
    for index, size in enumerate(layer_sizes):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            what = "the input size n0" if index == 0 else f"layer {index}"
            raise LnnInputError(f"{what} must be a positive number of units; got {size!r}")


def validate_architecture(n0: int, neurons: Sequence[int], activations: Sequence[str]) -> None:
    """Raise LnnInputError (a ValueError) naming the first bad layer of an n0 -> neurons[0] -> ... network."""
    if len(neurons) == 0:
        raise LnnInputError("the network needs at least one layer")
    if len(neurons) != len(activations):
        raise LnnInputError(
            f"{len(neurons)} layer sizes but {len(activations)} activations; give one of each per layer"
        )
    _check_sizes([n0, *neurons])
    layers = len(neurons)
    for layer, name in enumerate(activations, start=1):
        allowed, role = (_OUTPUTS, "an output") if layer == layers else (HIDDEN_ACTIVATIONS, "a hidden")
        if name not in allowed:
            raise LnnInputError(
                f"layer {layer} activation {name!r} is unknown for {role} layer; use one of {', '.join(allowed)}"
            )
    units = neurons[-1]
    if activations[-1] == "sigmoid" and units != 1:
        raise LnnInputError(
            f"layer {layers} is a sigmoid output with {units} units; it needs 1 (use softmax for several classes)"
        )
    if activations[-1] == "softmax" and units < 2:
        raise LnnInputError(
            f"layer {layers} is a softmax output with {units} unit; it needs at least 2 (one per class)"
        )


def _check_choice(name: str, allowed: Sequence[str], what: str) -> None:
    if name not in allowed:
        raise LnnInputError(f"{what} {name!r} is unknown; use one of {', '.join(allowed)}")


def _check_same_shape(AL: np.ndarray, Y: np.ndarray) -> None:
    if AL.shape != Y.shape:
        raise ValueError(f"output shape {AL.shape} and target shape {Y.shape} differ")


# --- initialisation ----------------------------------------------------------------------------


def init_params(layer_sizes: Sequence[int], init: str = "lecun", seed: int | None = None) -> Params:
    """Weights for layer_sizes = [n0, n1, ..., nL]: {"W1": (n1, n0), "b1": (n1, 1), ...}, all float64.

    One RandomState(seed) draws randn(n_l, n_{l-1}) for W1, W2, ... in layer order, exactly as
    classic from-scratch implementations do after np.random.seed(seed), so seeded runs match them
    number for number. lecun: randn / sqrt(fan_in); he: randn * sqrt(2 / fan_in). Biases are zero.
    """
    if len(layer_sizes) < 2:
        raise LnnInputError("layer_sizes needs the input size and at least one layer: [n0, n1, ...]")
    _check_sizes(layer_sizes)
    _check_choice(init, INITIALIZERS, "init")
    rng = np.random.RandomState(seed)
    params: Params = {}
    for layer in range(1, len(layer_sizes)):
        fan_in, units = layer_sizes[layer - 1], layer_sizes[layer]
        draw = rng.randn(units, fan_in)
        params[f"W{layer}"] = draw / np.sqrt(fan_in) if init == "lecun" else draw * np.sqrt(2.0 / fan_in)
        params[f"b{layer}"] = np.zeros((units, 1))
    return params


# --- activations -------------------------------------------------------------------------------


def _sigmoid(Z: np.ndarray) -> np.ndarray:
    # For Z < -709 exp(-Z) overflows to inf and the result is exactly 0, the right limit.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-Z))


def _softmax(Z: np.ndarray) -> np.ndarray:
    # Subtracting each column's max leaves the result unchanged and keeps exp() from overflowing.
    exp = np.exp(Z - Z.max(axis=0, keepdims=True))
    return exp / exp.sum(axis=0, keepdims=True)


_FORWARD = {
    "relu": lambda Z: np.maximum(Z, 0.0),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "linear": lambda Z: Z.copy(),  # a copy, so A never aliases Z
    "softmax": _softmax,
}


def _sigmoid_delta(dA: np.ndarray, Z: np.ndarray) -> np.ndarray:
    s = _sigmoid(Z)
    return dA * s * (1.0 - s)


# dA -> dZ = dA * g'(Z) for each hidden activation g.
_DELTA = {
    "relu": lambda dA, Z: np.where(Z > 0, dA, 0.0),
    "sigmoid": _sigmoid_delta,
    "tanh": lambda dA, Z: dA * (1.0 - np.tanh(Z) ** 2),
    "linear": lambda dA, Z: dA.copy(),
}


# --- one layer ---------------------------------------------------------------------------------


def layer_forward(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray, activation: str) -> tuple[np.ndarray, np.ndarray]:
    """A_prev (n_{l-1}, m), W (n_l, n_{l-1}), b (n_l, 1) -> (A, Z), both (n_l, m): Z = W @ A_prev + b, A = g(Z)."""
    _check_choice(activation, tuple(_FORWARD), "activation")
    Z = W @ A_prev + b
    return _FORWARD[activation](Z), Z


def hidden_delta(dA: np.ndarray, Z: np.ndarray, activation: str) -> np.ndarray:
    """dA, Z (n_l, m) of a hidden layer -> dZ = dA * g'(Z) (n_l, m)."""
    _check_choice(activation, HIDDEN_ACTIVATIONS, "hidden activation")
    return _DELTA[activation](dA, Z)


def layer_backward(
    dZ: np.ndarray, A_prev: np.ndarray, W: np.ndarray, l2: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dZ (n_l, m), A_prev (n_{l-1}, m), W (n_l, n_{l-1}) -> (dA_prev (n_{l-1}, m), dW like W, db (n_l, 1)).

    dZ is per example; the mean over the m examples (of the batch) is taken here. With l2 != 0 the
    L2 term's gradient is added: dW = dZ @ A_prev.T / m + (l2 / m) * W (b is not regularized).
    """
    return (W.T @ dZ, *weight_gradients(dZ, A_prev, W, l2))


def weight_gradients(dZ: np.ndarray, A_prev: np.ndarray, W: np.ndarray, l2: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """layer_backward's (dW, db) without dA_prev: layer 1's input gradient is never read, and costs a matmul."""
    m = A_prev.shape[1]
    dW = dZ @ A_prev.T / m
    if l2 != 0:
        dW = dW + (l2 / m) * W
    db = dZ.sum(axis=1, keepdims=True) / m
    return dW, db


# --- output layer: targets, cost, delta --------------------------------------------------------


def _regression_targets(y: np.ndarray, n_out: int) -> np.ndarray:
    if y.ndim not in (1, 2) or y.shape[0] == 0:
        raise LnnInputError(f"regression targets must have shape (m,) or (m, k) with m >= 1; got shape {y.shape}")
    k = 1 if y.ndim == 1 else y.shape[1]
    if k != n_out:
        raise LnnInputError(f"a linear output with {n_out} units needs targets of shape (m, {n_out}); got {y.shape}")
    try:
        Y = np.ascontiguousarray(y.reshape(y.shape[0], k).T, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise LnnInputError(f"regression targets must be numbers: {error}") from error
    if not np.isfinite(Y).all():
        raise LnnInputError("regression targets must be finite (no NaN or infinity)")
    return Y


def targets(y: np.ndarray, output_activation: str, n_out: int) -> np.ndarray:
    """Labels y (m,) -> float64 targets Y: (1, m) for a sigmoid output, one-hot (n_out, m) for softmax.

    For a linear output the targets are real values y (m,) (with n_out = 1) or (m, n_out), and
    Y = y.T as float64 (n_out, m).
    """
    _check_choice(output_activation, _OUTPUTS, "output activation")
    y = np.asarray(y)
    if output_activation in REGRESSION_OUTPUTS:
        return _regression_targets(y, n_out)
    if y.ndim != 1 or y.size == 0:
        raise LnnInputError(f"labels must have shape (m,) with m >= 1; got shape {y.shape}")
    if output_activation == "sigmoid":
        if n_out != 1:
            raise LnnInputError(f"a sigmoid output has 1 unit, not {n_out}")
        if not np.isin(y, (0, 1)).all():
            raise LnnInputError("a sigmoid output needs labels 0 or 1")
        return y.astype(np.float64).reshape(1, -1)
    classes = y.astype(np.int64)
    if not np.array_equal(classes, y) or classes.min() < 0 or classes.max() >= n_out:
        raise LnnInputError(f"a softmax output with {n_out} units needs integer labels 0..{n_out - 1}")
    Y = np.zeros((n_out, y.size))
    Y[classes, np.arange(y.size)] = 1.0
    return Y


def loss_sum(AL: np.ndarray, Y: np.ndarray, output_activation: str) -> float:
    """The SUM over the m examples of AL and Y, both (n_L, m), of each example's loss.

    Cross-entropy for a classification output (binary for sigmoid, categorical for softmax):
    -sum(Y log P + (1 - Y) log(1 - P)), resp. -sum(Y log P). Only the probabilities AL are at
    hand (not Z), and in float64 they saturate to exactly 0 or 1 (sigmoid at |Z| > ~37) where log()
    is -inf. So P is AL clipped to [EPSILON, 1 - EPSILON]: the loss is exact wherever
    EPSILON < AL < 1 - EPSILON and each example's loss is at most -log(EPSILON) ~ 34.5 otherwise.

    Squared error for a linear output: sum((AL - Y)^2) / 2.
    """
    _check_choice(output_activation, _OUTPUTS, "output activation")
    _check_same_shape(AL, Y)
    if output_activation in REGRESSION_OUTPUTS:
        D = AL - Y
        return float((D * D).sum() / 2)
    P = np.clip(AL, EPSILON, 1.0 - EPSILON)
    if output_activation == "sigmoid":
        log_likelihood = Y * np.log(P) + (1.0 - Y) * np.log(1.0 - P)
    else:
        log_likelihood = Y * np.log(P)
    return float(-log_likelihood.sum())


def compute_cost(AL: np.ndarray, Y: np.ndarray, output_activation: str) -> float:
    """The mean loss over the m examples of AL and Y (n_L, m): exactly loss_sum(AL, Y, output_activation) / m.

    Mean cross-entropy for sigmoid and softmax, 1/(2m) sum((AL - Y)^2) for a linear output.
    """
    return loss_sum(AL, Y, output_activation) / Y.shape[1]


def output_delta(AL: np.ndarray, Y: np.ndarray, output_activation: str) -> np.ndarray:
    """dZ_L (n_L, m) of the loss per example: AL - Y, for sigmoid + binary and softmax + categorical
    cross-entropy, and for a linear output + squared error / 2."""
    _check_choice(output_activation, _OUTPUTS, "output activation")
    _check_same_shape(AL, Y)
    return AL - Y


# --- L2 regularization -------------------------------------------------------------------------


def squared_norm(W: np.ndarray) -> float:
    """||W||_F^2 = float(sum(W * W)) of one weight matrix."""
    return float((W * W).sum())


def l2_penalty(params: Params, l2: float) -> float:
    """(l2 / 2) * sum_l ||W_l||_F^2 over the layers' weights (not the biases).

    Exactly: total = 0.0; total += squared_norm(W_l) for l = 1..L in layer order; l2 / 2 * total.
    A caller holding one layer at a time (the Lambda engine) gets the same float accumulating
    squared_norm layer by layer in that order.
    """
    total = 0.0
    for layer in range(1, len(params) // 2 + 1):
        total += squared_norm(params[f"W{layer}"])
    return l2 / 2 * total


def batch_cost_sum(AL: np.ndarray, Y: np.ndarray, output_activation: str, params: Params, l2: float = 0.0) -> float:
    """One batch's contribution to its epoch's cost (which is the sum of the contributions / m).

    loss_sum(AL, Y, output_activation), plus l2_penalty(params, l2) when l2 != 0, with the params of
    the batch's forward pass (before its update). So the cost of the batch alone is this / m_b:
    (loss_sum_b + (l2 / 2) sum_l ||W_l||^2) / m_b, whose gradient `backward_pass(..., l2=l2)` gives.
    With l2 == 0 it is loss_sum exactly (no zero term is added).
    """
    total = loss_sum(AL, Y, output_activation)
    if l2 != 0:
        total = total + l2_penalty(params, l2)
    return total


# --- whole network -----------------------------------------------------------------------------


def apply_update(params: Params, grads: Params, learning_rate: float) -> Params:
    """A new params dict: W_l - learning_rate * dW_l and b_l - learning_rate * db_l (grads keyed "dW1", "db1", ...)."""
    return {name: value - learning_rate * grads[f"d{name}"] for name, value in params.items()}


def forward_pass(params: Params, X_cols: np.ndarray, activations: Sequence[str]) -> tuple[np.ndarray, list[Cache]]:
    """X_cols (n0, m) -> (AL (n_L, m), caches), caches[l - 1] = (A_{l-1}, Z_l) for l = 1..L."""
    layers = len(params) // 2  # a W_l and a b_l per layer
    validate_architecture(params["W1"].shape[1], [params[f"W{l}"].shape[0] for l in range(1, layers + 1)], activations)
    A = X_cols
    caches: list[Cache] = []
    for layer in range(1, layers + 1):
        A_next, Z = layer_forward(A, params[f"W{layer}"], params[f"b{layer}"], activations[layer - 1])
        caches.append((A, Z))
        A = A_next
    return A, caches


def backward_pass(
    params: Params,
    caches: Sequence[Cache],
    AL: np.ndarray,
    Y: np.ndarray,
    activations: Sequence[str],
    l2: float = 0.0,
) -> Params:
    """Gradients of the mean cost, {"dW1": like W1, "db1": like b1, ...}, from forward_pass's AL and caches.

    With l2 != 0, of the cost with L2: (loss_sum + (l2 / 2) sum_l ||W_l||^2) / m (see batch_cost_sum).
    """
    dZ = output_delta(AL, Y, activations[-1])
    grads: Params = {}
    for layer in range(len(caches), 1, -1):
        A_prev, _ = caches[layer - 1]
        dA_prev, grads[f"dW{layer}"], grads[f"db{layer}"] = layer_backward(dZ, A_prev, params[f"W{layer}"], l2)
        dZ = hidden_delta(dA_prev, caches[layer - 2][1], activations[layer - 2])
    grads["dW1"], grads["db1"] = weight_gradients(dZ, caches[0][0], params["W1"], l2)
    return grads


def gradient_descent_epoch(
    params: Params, X_cols: np.ndarray, Y: np.ndarray, activations: Sequence[str], learning_rate: float
) -> tuple[Params, float]:
    """One full-batch step on X_cols (n0, m), Y (n_L, m) -> (new params, cost before the update)."""
    AL, caches = forward_pass(params, X_cols, activations)
    cost = compute_cost(AL, Y, activations[-1])
    grads = backward_pass(params, caches, AL, Y, activations)
    return apply_update(params, grads, learning_rate), cost


# --- mini-batches and the general epoch ---------------------------------------------------------


def _check_batch_size(m: int, batch_size: int | None) -> None:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise LnnInputError(f"the number of examples m must be a positive integer; got {m!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
    ):
        raise LnnInputError(f"batch_size must be a positive integer or None (the whole set); got {batch_size!r}")


def batch_count(m: int, batch_size: int | None) -> int:
    """The number of mini-batches of m examples: 1 when batch_size is None or >= m, else ceil(m / batch_size)."""
    _check_batch_size(m, batch_size)
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
    _check_batch_size(m, batch_size)
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
    new_params, new_state = optimizers.update(params, grads, opt_state, learning_rate=learning_rate, **optimizer_settings)
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
            params, opt_state, batch_columns(X_cols, batch), batch_columns(Y, batch),
            activations=activations, learning_rate=learning_rate, l2=l2, **optimizer_settings,
        )
        total += cost_sum
    return params, opt_state, total / X_cols.shape[1]


# --- rows interface ----------------------------------------------------------------------------


def to_columns(X_rows: np.ndarray) -> np.ndarray:
    """Examples as rows X (m, n0) -> the internal A0 = X.T (n0, m), float64 and C-contiguous.

    Converting is exact (no scaling) and one fixed memory layout keeps the matrix products, and so
    the results, identical wherever the same data enters the network.
    """
    X_rows = np.asarray(X_rows)
    if X_rows.ndim != 2 or X_rows.shape[0] == 0:
        raise LnnInputError(f"X must have shape (m, n0) with m >= 1; got shape {X_rows.shape}")
    return np.ascontiguousarray(X_rows.T, dtype=np.float64)


def predict_proba(params: Params, X_rows: np.ndarray, activations: Sequence[str]) -> np.ndarray:
    """X (m, n0) -> output probabilities: (m,) of class 1 for a sigmoid output, (m, C) for softmax.

    For a linear output, the predicted values: (m,) with one output unit, (m, k) with k.
    """
    AL, _ = forward_pass(params, to_columns(X_rows), activations)
    single = activations[-1] == "sigmoid" or (activations[-1] in REGRESSION_OUTPUTS and AL.shape[0] == 1)
    return AL[0] if single else AL.T


def predict(params: Params, X_rows: np.ndarray, activations: Sequence[str]) -> np.ndarray:
    """X (m, n0) -> int64 labels (m,): probability > 0.5 for a sigmoid output, the most probable class for softmax.

    For a linear output, the predicted values (float64, as `predict_proba`).
    """
    proba = predict_proba(params, X_rows, activations)
    if activations[-1] in REGRESSION_OUTPUTS:
        return proba
    return (proba > 0.5).astype(np.int64) if activations[-1] == "sigmoid" else proba.argmax(axis=1)


def accuracy(params: Params, X_rows: np.ndarray, y: np.ndarray, activations: Sequence[str]) -> float:
    """Fraction of the m rows of X (m, n0) whose predicted label equals y (m,) (classification outputs only)."""
    if activations[-1] in REGRESSION_OUTPUTS:
        raise LnnInputError(f"accuracy needs a classification output, not {activations[-1]!r}; use rmse or r2")
    labels = predict(params, X_rows, activations)
    y = np.asarray(y)
    if y.shape != labels.shape:
        raise LnnInputError(f"labels must have shape {labels.shape}, one per row of X; got {y.shape}")
    return float(np.mean(labels == y))


def _regression_outputs(
    params: Params, X_rows: np.ndarray, y: np.ndarray, activations: Sequence[str], metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """(AL, Y), both (k, m), for a linear output; LnnInputError for another output or mismatched targets."""
    if activations[-1] not in REGRESSION_OUTPUTS:
        raise LnnInputError(f"{metric} needs a regression output ({', '.join(REGRESSION_OUTPUTS)}), "
                            f"not {activations[-1]!r}; use accuracy")
    X_cols = to_columns(X_rows)
    AL, _ = forward_pass(params, X_cols, activations)
    Y = targets(y, activations[-1], AL.shape[0])
    if Y.shape != AL.shape:
        raise LnnInputError(f"X has {AL.shape[1]} rows but there are {Y.shape[1]} targets; give one per row")
    return AL, Y


def rmse(params: Params, X_rows: np.ndarray, y: np.ndarray, activations: Sequence[str]) -> float:
    """Root mean squared error of a linear output's predictions for X (m, n0) against y (m,) or (m, k).

    sqrt(mean((a - y)^2)) over all m * k predicted values.
    """
    AL, Y = _regression_outputs(params, X_rows, y, activations, "rmse")
    D = AL - Y
    return float(np.sqrt((D * D).mean()))


def r2(params: Params, X_rows: np.ndarray, y: np.ndarray, activations: Sequence[str]) -> float:
    """Coefficient of determination of a linear output's predictions for X (m, n0) against y (m,) or (m, k).

    Per output unit 1 - sum((y - a)^2) / sum((y - mean(y))^2), averaged over the k units (as
    scikit-learn's r2_score); a unit whose targets are all equal scores 1.0 if predicted exactly,
    else 0.0.
    """
    AL, Y = _regression_outputs(params, X_rows, y, activations, "r2")
    residual = ((Y - AL) ** 2).sum(axis=1)
    total = ((Y - Y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    constant = total == 0
    scores = np.where(constant, np.where(residual == 0, 1.0, 0.0), 1.0 - residual / np.where(constant, 1.0, total))
    return float(scores.mean())


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
) -> tuple[Params, list[float], optimizers.State]:
    """`train_reference`, also returning the optimizer state after the last update -> (params, costs, opt_state).

    Epoch e = 1, 2, ... is train_epoch over minibatches(m, batch_size, shuffle_seed, e) from
    init_params(..., init, seed) and optimizers.init_state(params, optimizer).
    batch_size: None (or >= m) is the whole set, unshuffled. shuffle_seed: None means `seed`, and 0
    when seed is None too. optimizer: "gd", "momentum" (beta) or "adam" (beta1, beta2, epsilon).
    l2: lambda of the L2 term (0 is none). threshold: stop after the first epoch whose cost is below
    it; the costs then end with that epoch's.
    """
    X_cols = to_columns(X)
    validate_architecture(X_cols.shape[0], neurons, activations)
    if epochs < 0 or not learning_rate > 0:
        raise LnnInputError(f"need epochs >= 0 and learning_rate > 0; got {epochs!r} and {learning_rate!r}")
    optimizers.check_settings(optimizer, learning_rate, beta, beta1, beta2, epsilon)
    if not (np.isfinite(l2) and l2 >= 0):
        raise LnnInputError(f"l2 must be a finite number >= 0; got {l2!r}")
    if threshold is not None and np.isnan(threshold):
        raise LnnInputError("threshold must be a number or None, not NaN")
    Y = targets(y, activations[-1], neurons[-1])
    m = X_cols.shape[1]
    if Y.shape[1] != m:
        raise LnnInputError(f"X has {m} rows but there are {Y.shape[1]} labels")
    _check_batch_size(m, batch_size)
    if shuffle_seed is None:
        shuffle_seed = 0 if seed is None else seed
    params = init_params([X_cols.shape[0], *neurons], init, seed)
    opt_state = optimizers.init_state(params, optimizer)
    costs: list[float] = []
    from .shards import train_epoch_sharded  # shards builds on this module: imported here, not at the top

    for epoch in range(1, epochs + 1):
        epoch_step = train_epoch if workers == 1 else functools.partial(train_epoch_sharded, workers=workers)
        params, opt_state, cost = epoch_step(
            params, opt_state, X_cols, Y, activations=activations,
            batches=minibatches(m, batch_size, shuffle_seed, epoch), learning_rate=learning_rate,
            optimizer=optimizer, beta=beta, beta1=beta1, beta2=beta2, epsilon=epsilon, l2=l2,
        )
        costs.append(cost)
        if threshold is not None and cost < threshold:
            break
    return params, costs, opt_state
