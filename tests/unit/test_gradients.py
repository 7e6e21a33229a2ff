"""Analytic gradients (backward_pass) against central differences of the cost, for every activation."""

import numpy as np
import pytest

from lnn_core.ml.network import (
    HIDDEN_ACTIVATIONS,
    backward_pass,
    batch_cost_sum,
    compute_cost,
    forward_pass,
    init_params,
    targets,
)

EPS = 1e-7
TOLERANCE = 1e-7
N_INPUTS = 4
N_EXAMPLES = 6
# Central differences step every pre-activation by at most ~EPS * |A|; relu networks keep |Z| well
# above that, so no perturbation crosses relu's kink at 0.
MIN_ABS_Z = 1e-4


def tiny_problem(activations, n_out, seed=0):
    """A random n0=4 -> 5 -> 4 ... -> n_out network with non-zero biases, 6 examples and random labels."""
    rng = np.random.RandomState(seed)
    hidden = [5, 4, 3, 5][: len(activations) - 1]
    params = init_params([N_INPUTS, *hidden, n_out], seed=seed)
    for name in params:
        if name.startswith("b"):
            params[name] = rng.randn(*params[name].shape) * 0.5
    X_cols = rng.randn(N_INPUTS, N_EXAMPLES)
    if activations[-1] == "linear":  # real-valued regression targets, (m,) or (m, k)
        labels = rng.randn(N_EXAMPLES) if n_out == 1 else rng.randn(N_EXAMPLES, n_out)
    else:
        labels = rng.randint(0, max(n_out, 2), size=N_EXAMPLES)
    return params, X_cols, targets(labels, activations[-1], n_out)


def cost_of(params, X_cols, Y, activations, l2=0.0):
    """The mean cost; with l2, the batch's regularized cost (loss_sum + l2/2 sum ||W_l||^2) / m."""
    AL, _ = forward_pass(params, X_cols, activations)
    if l2 == 0:
        return compute_cost(AL, Y, activations[-1])
    return batch_cost_sum(AL, Y, activations[-1], params, l2) / Y.shape[1]


def numerical_grads(params, X_cols, Y, activations, l2=0.0):
    grads = {}
    for name, value in params.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            shifted = []
            for step in (EPS, -EPS):
                moved = value.copy()
                moved[index] += step
                shifted.append(cost_of({**params, name: moved}, X_cols, Y, activations, l2))
            grad[index] = (shifted[0] - shifted[1]) / (2 * EPS)
        grads[f"d{name}"] = grad
    return grads


def analytic_grads(params, X_cols, Y, activations, l2=0.0):
    AL, caches = forward_pass(params, X_cols, activations)
    return backward_pass(params, caches, AL, Y, activations, l2)


def relative_error(numerical, analytic):
    assert sorted(numerical) == sorted(analytic)
    num = np.concatenate([numerical[key].ravel() for key in sorted(numerical)])
    ana = np.concatenate([analytic[key].ravel() for key in sorted(numerical)])
    return np.linalg.norm(num - ana) / (np.linalg.norm(num) + np.linalg.norm(ana))


def smallest_hidden_abs_z(params, X_cols, activations):
    _, caches = forward_pass(params, X_cols, activations)
    return min(np.abs(Z).min() for _, Z in caches[:-1])


def check(activations, n_out, l2=0.0):
    params, X_cols, Y = tiny_problem(activations, n_out)
    if "relu" in activations:
        assert smallest_hidden_abs_z(params, X_cols, activations) > MIN_ABS_Z
    numerical = numerical_grads(params, X_cols, Y, activations, l2)
    assert relative_error(numerical, analytic_grads(params, X_cols, Y, activations, l2)) < TOLERANCE


@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
def test_sigmoid_output_with_binary_cross_entropy(hidden):
    check([hidden, hidden, "sigmoid"], n_out=1)


@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
def test_softmax_output_with_categorical_cross_entropy(hidden):
    check([hidden, hidden, "softmax"], n_out=3)


@pytest.mark.parametrize(("output", "n_out"), [("sigmoid", 1), ("softmax", 3)])
def test_mixed_hidden_activations_use_each_layers_own_derivative(output, n_out):
    check(["relu", "tanh", "sigmoid", "linear", output], n_out)


@pytest.mark.parametrize(("output", "n_out"), [("sigmoid", 1), ("softmax", 3)])
def test_single_layer_network(output, n_out):
    check([output], n_out)


def test_the_check_detects_a_wrong_derivative():
    """Backpropagating with sigmoid' where the forward pass used tanh must fail the gradient check."""
    activations = ["tanh", "tanh", "sigmoid"]
    params, X_cols, Y = tiny_problem(activations, 1)
    AL, caches = forward_pass(params, X_cols, activations)
    wrong = backward_pass(params, caches, AL, Y, ["sigmoid", "sigmoid", "sigmoid"])
    assert relative_error(numerical_grads(params, X_cols, Y, activations), wrong) > 1e-2


@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("n_out", [1, 3])
def test_linear_output_with_squared_error(hidden, n_out):
    check([hidden, hidden, "linear"], n_out)


def test_single_linear_layer():
    check(["linear"], 2)


@pytest.mark.parametrize(("output", "n_out"), [("sigmoid", 1), ("softmax", 3), ("linear", 1), ("linear", 2)])
@pytest.mark.parametrize("l2", [0.05, 0.7])
def test_l2_regularized_cost(output, n_out, l2):
    check(["relu", "tanh", output], n_out, l2)


def test_the_check_detects_a_missing_l2_term():
    activations = ["tanh", "sigmoid"]
    params, X_cols, Y = tiny_problem(activations, 1)
    without = analytic_grads(params, X_cols, Y, activations)
    assert relative_error(numerical_grads(params, X_cols, Y, activations, 0.7), without) > 1e-2
