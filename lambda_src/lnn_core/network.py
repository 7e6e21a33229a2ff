"""A fully connected neural network in pure NumPy: init, per-layer forward/backward, cost, update, predict.

Inside this module examples are COLUMNS, as in the deeplearning.ai course: the input activations
A0 = X.T have shape (n0, m); layer l has W_l (n_l, n_{l-1}), b_l (n_l, 1) and Z_l, A_l (n_l, m).
At the public data interfaces (`predict_proba`, `predict`, `accuracy`, `train_reference`) examples
are ROWS: X (m, n0) and labels y (m,) (0/1 for a sigmoid output, class indices for softmax).

`activations` is always one name per layer, layer 1 first: hidden layers use HIDDEN_ACTIVATIONS,
the last layer an OUTPUT_ACTIVATIONS name (sigmoid with 1 unit, or softmax with >= 2 units).

The Lambda engine runs one layer per invocation and must reproduce `gradient_descent_epoch` bit
for bit, so every function is deterministic, never mutates its inputs, and one epoch is exactly
this sequence of floating-point operations:

    A_l, Z_l = layer_forward(A_{l-1}, W_l, b_l, act_l)              for l = 1..L
    cost = compute_cost(A_L, Y, act_L)
    dZ_L = output_delta(A_L, Y, act_L)
    for l = L..1:
        dA_{l-1}, dW_l, db_l = layer_backward(dZ_l, A_{l-1}, W_l)
        if l > 1: dZ_{l-1} = hidden_delta(dA_{l-1}, Z_{l-1}, act_{l-1})
    params = apply_update(params, grads, learning_rate)
"""

from collections.abc import Sequence

import numpy as np

from .errors import LnnInputError

HIDDEN_ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")
INITIALIZERS = ("lecun", "he")

# Probabilities are clipped to [EPSILON, 1 - EPSILON] before the log in `compute_cost`.
EPSILON = 1e-15

Params = dict[str, np.ndarray]
Cache = tuple[np.ndarray, np.ndarray]  # (A_{l-1}, Z_l) of one layer


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
        allowed, role = (OUTPUT_ACTIVATIONS, "an output") if layer == layers else (HIDDEN_ACTIVATIONS, "a hidden")
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


def layer_backward(dZ: np.ndarray, A_prev: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dZ (n_l, m), A_prev (n_{l-1}, m), W (n_l, n_{l-1}) -> (dA_prev (n_{l-1}, m), dW like W, db (n_l, 1)).

    dZ is per example; the mean over the m examples is taken here.
    """
    m = A_prev.shape[1]
    dW = dZ @ A_prev.T / m
    db = dZ.sum(axis=1, keepdims=True) / m
    return W.T @ dZ, dW, db


# --- output layer: targets, cost, delta --------------------------------------------------------


def targets(y: np.ndarray, output_activation: str, n_out: int) -> np.ndarray:
    """Labels y (m,) -> float64 targets Y: (1, m) for a sigmoid output, one-hot (n_out, m) for softmax."""
    _check_choice(output_activation, OUTPUT_ACTIVATIONS, "output activation")
    y = np.asarray(y)
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


def compute_cost(AL: np.ndarray, Y: np.ndarray, output_activation: str) -> float:
    """Mean cross-entropy over the m examples of AL and Y, both (n_L, m): binary for sigmoid, categorical for softmax.

    Only the probabilities AL are at hand (not Z), and in float64 they saturate to exactly 0 or 1
    (sigmoid at |Z| > ~37) where log() is -inf. So AL is clipped to [EPSILON, 1 - EPSILON]: the
    cost is exact wherever EPSILON < AL < 1 - EPSILON and each example's loss is at most
    -log(EPSILON) ~ 34.5 otherwise.
    """
    _check_choice(output_activation, OUTPUT_ACTIVATIONS, "output activation")
    _check_same_shape(AL, Y)
    m = Y.shape[1]
    P = np.clip(AL, EPSILON, 1.0 - EPSILON)
    if output_activation == "sigmoid":
        log_likelihood = Y * np.log(P) + (1.0 - Y) * np.log(1.0 - P)
    else:
        log_likelihood = Y * np.log(P)
    return float(-log_likelihood.sum() / m)


def output_delta(AL: np.ndarray, Y: np.ndarray, output_activation: str) -> np.ndarray:
    """dZ_L (n_L, m) of the cost per example: AL - Y, for sigmoid + binary and softmax + categorical cross-entropy."""
    _check_choice(output_activation, OUTPUT_ACTIVATIONS, "output activation")
    _check_same_shape(AL, Y)
    return AL - Y


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
    params: Params, caches: Sequence[Cache], AL: np.ndarray, Y: np.ndarray, activations: Sequence[str]
) -> Params:
    """Gradients of the mean cost, {"dW1": like W1, "db1": like b1, ...}, from forward_pass's AL and caches."""
    dZ = output_delta(AL, Y, activations[-1])
    grads: Params = {}
    for layer in range(len(caches), 0, -1):
        A_prev, _ = caches[layer - 1]
        dA_prev, grads[f"dW{layer}"], grads[f"db{layer}"] = layer_backward(dZ, A_prev, params[f"W{layer}"])
        if layer > 1:
            dZ = hidden_delta(dA_prev, caches[layer - 2][1], activations[layer - 2])
    return grads


def gradient_descent_epoch(
    params: Params, X_cols: np.ndarray, Y: np.ndarray, activations: Sequence[str], learning_rate: float
) -> tuple[Params, float]:
    """One full-batch step on X_cols (n0, m), Y (n_L, m) -> (new params, cost before the update)."""
    AL, caches = forward_pass(params, X_cols, activations)
    cost = compute_cost(AL, Y, activations[-1])
    grads = backward_pass(params, caches, AL, Y, activations)
    return apply_update(params, grads, learning_rate), cost


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
    """X (m, n0) -> output probabilities: (m,) of class 1 for a sigmoid output, (m, C) for softmax."""
    AL, _ = forward_pass(params, to_columns(X_rows), activations)
    return AL[0] if activations[-1] == "sigmoid" else AL.T


def predict(params: Params, X_rows: np.ndarray, activations: Sequence[str]) -> np.ndarray:
    """X (m, n0) -> int64 labels (m,): probability > 0.5 for a sigmoid output, the most probable class for softmax."""
    proba = predict_proba(params, X_rows, activations)
    return (proba > 0.5).astype(np.int64) if activations[-1] == "sigmoid" else proba.argmax(axis=1)


def accuracy(params: Params, X_rows: np.ndarray, y: np.ndarray, activations: Sequence[str]) -> float:
    """Fraction of the m rows of X (m, n0) whose predicted label equals y (m,)."""
    labels = predict(params, X_rows, activations)
    y = np.asarray(y)
    if y.shape != labels.shape:
        raise LnnInputError(f"labels must have shape {labels.shape}, one per row of X; got {y.shape}")
    return float(np.mean(labels == y))


def train_reference(
    X: np.ndarray,
    y: np.ndarray,
    *,
    neurons: Sequence[int],
    activations: Sequence[str],
    learning_rate: float,
    epochs: int,
    init: str = "lecun",
    seed: int | None = None,
) -> tuple[Params, list[float]]:
    """The plain full-batch NumPy loop: X (m, n0) rows (used as given, not scaled), y (m,) labels.

    neurons = [n1, ..., nL]. Returns the trained params and the cost of each epoch (before its update).
    """
    X_cols = to_columns(X)
    validate_architecture(X_cols.shape[0], neurons, activations)
    if epochs < 0 or not learning_rate > 0:
        raise LnnInputError(f"need epochs >= 0 and learning_rate > 0; got {epochs!r} and {learning_rate!r}")
    Y = targets(y, activations[-1], neurons[-1])
    if Y.shape[1] != X_cols.shape[1]:
        raise LnnInputError(f"X has {X_cols.shape[1]} rows but there are {Y.shape[1]} labels")
    params = init_params([X_cols.shape[0], *neurons], init, seed)
    costs = []
    for _ in range(epochs):
        params, cost = gradient_descent_epoch(params, X_cols, Y, activations, learning_rate)
        costs.append(cost)
    return params, costs
