"""Parameter updates in pure NumPy: plain gradient descent, momentum and Adam.

Beside network.py and in its style: pure functions, deterministic, never mutating their inputs.
`params` is {"W1": (n1, n0), "b1": (n1, 1), ...}, `grads` {"dW1": like W1, "db1": like b1, ...}.

The optimizer state is a dict of arrays only, so it can be saved in an .npz next to the parameters:
    "t"        0-d int64 array: the number of updates made so far (0 before the first one)
    "v_<name>" momentum and adam: the velocity / first moment of parameter <name>, like it
    "s_<name>" adam: the second moment of parameter <name>, like it
The names never clash with a parameter's ("W1", "b1", ...).

Exact operations of one update, with t = state["t"] + 1 (updates count from 1 across the whole run),
for every parameter P with gradient dP (a Python float for learning_rate and the betas, so that a float32 P, dP and
moments stay float32: NumPy applies a Python float in the array's type):
    gd:        P = P - learning_rate * dP                       (== network.apply_update bit for bit)
    momentum:  v = beta * v + (1.0 - beta) * dP
               P = P - learning_rate * v
    adam:      v = beta1 * v + (1.0 - beta1) * dP
               s = beta2 * s + (1.0 - beta2) * (dP * dP)
               v_hat = v / (1.0 - beta1 ** t)
               s_hat = s / (1.0 - beta2 ** t)
               P = P - learning_rate * v_hat / (np.sqrt(s_hat) + epsilon)   (i.e. (learning_rate * v_hat) / (...))

Every parameter is updated on its own (elementwise, with the shared t), so a caller holding only
some layers (the Lambda engine, one layer per invocation) can call `update` with just those
parameters, their gradients, their state entries and the same "t": it gets exactly the arrays the
whole-network call would give.
"""

from collections.abc import Mapping

import numpy as np

from lnn_core.errors import LnnInputError

OPTIMIZERS = ("gd", "momentum", "adam")

DEFAULT_BETA = 0.9
DEFAULT_BETA1 = 0.9
DEFAULT_BETA2 = 0.999
DEFAULT_EPSILON = 1e-8

State = dict[str, np.ndarray]
Params = dict[str, np.ndarray]

# The moment arrays each optimizer keeps per parameter.
_MOMENTS = {"gd": (), "momentum": ("v",), "adam": ("v", "s")}


def keeps_moments(optimizer: str) -> bool:
    """Whether the optimizer keeps arrays per parameter (momentum, adam), or only its update count t (gd)."""
    _check_optimizer(optimizer)
    return bool(_MOMENTS[optimizer])


def _check_optimizer(optimizer: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise LnnInputError(f"optimizer {optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}")


def check_settings(
    optimizer: str,
    learning_rate: float,
    beta: float = DEFAULT_BETA,
    beta1: float = DEFAULT_BETA1,
    beta2: float = DEFAULT_BETA2,
    epsilon: float = DEFAULT_EPSILON,
) -> None:
    """Raise LnnInputError unless optimizer is known, learning_rate > 0, every beta in [0, 1) and epsilon > 0."""
    _check_optimizer(optimizer)
    if not learning_rate > 0:
        raise LnnInputError(f"learning_rate must be > 0; got {learning_rate!r}")
    for name, value in (("beta", beta), ("beta1", beta1), ("beta2", beta2)):
        if not 0 <= value < 1:
            raise LnnInputError(f"{name} must be in [0, 1); got {value!r}")
    if not epsilon > 0:
        raise LnnInputError(f"epsilon must be > 0; got {epsilon!r}")


def state_keys(params: Mapping[str, np.ndarray], optimizer: str) -> list[str]:
    """The keys of `init_state(params, optimizer)`, in its order: "t", then per parameter "v_<name>" (, "s_<name>")."""
    _check_optimizer(optimizer)
    return ["t", *(f"{moment}_{name}" for name in params for moment in _MOMENTS[optimizer])]


def init_state(params: Mapping[str, np.ndarray], optimizer: str) -> State:
    """The state before the first update: t = 0 (0-d int64) and zero moments (shaped and typed like each parameter)."""
    _check_optimizer(optimizer)
    state: State = {"t": np.array(0, dtype=np.int64)}
    for name, value in params.items():
        for moment in _MOMENTS[optimizer]:
            state[f"{moment}_{name}"] = np.zeros(np.shape(value), dtype=np.asarray(value).dtype)
    return state


def update(
    params: Mapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    state: Mapping[str, np.ndarray],
    *,
    optimizer: str = "gd",
    learning_rate: float,
    beta: float = DEFAULT_BETA,
    beta1: float = DEFAULT_BETA1,
    beta2: float = DEFAULT_BETA2,
    epsilon: float = DEFAULT_EPSILON,
) -> tuple[Params, State]:
    """One update of every parameter -> (new params, new state); the operations are in the module docstring.

    params and grads ("d" + name) have the same shapes; state holds "t" and the moments of these
    parameters (extra state entries, e.g. other layers' moments, are left out of the new state).
    Nothing is mutated: the result holds new arrays.
    """
    _check_optimizer(optimizer)
    missing = [key for key in state_keys(params, optimizer) if key not in state]
    if missing:
        raise LnnInputError(f"the {optimizer} optimizer state lacks {', '.join(missing)}")
    # Python floats: a NumPy float64 scalar would turn float32 arrays into float64 ones
    learning_rate, beta, beta1, beta2, epsilon = map(float, (learning_rate, beta, beta1, beta2, epsilon))
    t = int(state["t"]) + 1
    new_params: Params = {}
    new_state: State = {"t": np.array(t, dtype=np.int64)}
    for name, P in params.items():
        dP = grads[f"d{name}"]
        if optimizer == "gd":
            new_params[name] = P - learning_rate * dP
        elif optimizer == "momentum":
            v = beta * state[f"v_{name}"] + (1.0 - beta) * dP
            new_params[name] = P - learning_rate * v
            new_state[f"v_{name}"] = v
        else:
            v = beta1 * state[f"v_{name}"] + (1.0 - beta1) * dP
            s = beta2 * state[f"s_{name}"] + (1.0 - beta2) * (dP * dP)
            v_hat = v / (1.0 - beta1**t)
            s_hat = s / (1.0 - beta2**t)
            new_params[name] = P - learning_rate * v_hat / (np.sqrt(s_hat) + epsilon)
            new_state[f"v_{name}"] = v
            new_state[f"s_{name}"] = s
    return new_params, new_state
