"""The NumPy network's parts: init, forward, targets and cost, per-layer backward and update. Training, prediction and
the architecture's validation are in test_network_training.py."""

import copy

import numpy as np
import pytest

from lnn_core.ml import network
from lnn_core.ml.network import (
    apply_update,
    compute_cost,
    forward_pass,
    hidden_delta,
    init_params,
    layer_backward,
    layer_forward,
    output_delta,
    targets,
)

# --- init --------------------------------------------------------------------------------------


def test_init_shapes_and_zero_biases():
    params = init_params([5, 4, 3, 1], seed=0)
    assert list(params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert [params[f"W{l}"].shape for l in (1, 2, 3)] == [(4, 5), (3, 4), (1, 3)]
    assert [params[f"b{l}"].shape for l in (1, 2, 3)] == [(4, 1), (3, 1), (1, 1)]
    assert all(value.dtype == np.float64 for value in params.values())
    assert all(not params[f"b{l}"].any() for l in (1, 2, 3))


def test_lecun_draws_match_one_random_state_in_layer_order():
    params = init_params([7, 5, 3], init="lecun", seed=3)
    rng = np.random.RandomState(3)
    np.testing.assert_array_equal(params["W1"], rng.randn(5, 7) / np.sqrt(7))
    np.testing.assert_array_equal(params["W2"], rng.randn(3, 5) / np.sqrt(5))


def test_he_draws_match_one_random_state_in_layer_order():
    params = init_params([7, 5, 3], init="he", seed=3)
    rng = np.random.RandomState(3)
    np.testing.assert_array_equal(params["W1"], rng.randn(5, 7) * np.sqrt(2 / 7))
    np.testing.assert_array_equal(params["W2"], rng.randn(3, 5) * np.sqrt(2 / 5))


@pytest.mark.parametrize(("init", "expected_std"), [("lecun", 1 / np.sqrt(400)), ("he", np.sqrt(2 / 400))])
def test_init_scaling(init, expected_std):
    W = init_params([400, 300], init=init, seed=1)["W1"]
    assert abs(W.std() / expected_std - 1) < 0.02
    assert abs(W.mean()) < 0.05 * expected_std


def test_seeds_reproduce_and_differ():
    same = [init_params([3, 4, 1], seed=11)["W1"] for _ in range(2)]
    np.testing.assert_array_equal(*same)
    assert not np.array_equal(init_params([3, 4, 1], seed=12)["W1"], same[0])
    assert not np.array_equal(init_params([3, 4, 1])["W1"], init_params([3, 4, 1])["W1"])


@pytest.mark.parametrize(
    ("layer_sizes", "init", "message"),
    [
        ([3], "lecun", "at least one layer"),
        ([3, 0, 1], "lecun", "layer 1 must be a positive"),
        ([0, 2], "lecun", "input size n0"),
        ([3, 2.5], "lecun", "layer 1 must be a positive"),
        ([3, 1], "xavier", "init 'xavier' is unknown; use one of lecun, he"),
    ],
)
def test_init_rejects_bad_input(layer_sizes, init, message):
    with pytest.raises(ValueError, match=message):
        init_params(layer_sizes, init=init)


# --- forward -----------------------------------------------------------------------------------


Z_SAMPLE = np.array([[-2.0, 0.0, 3.0]])


@pytest.mark.parametrize(
    ("activation", "expected"),
    [
        ("relu", [[0.0, 0.0, 3.0]]),
        ("sigmoid", [[1 / (1 + np.exp(2.0)), 0.5, 1 / (1 + np.exp(-3.0))]]),
        ("tanh", [[np.tanh(-2.0), 0.0, np.tanh(3.0)]]),
        ("linear", [[-2.0, 0.0, 3.0]]),
    ],
)
def test_layer_forward_computes_z_and_activation(activation, expected):
    W, b = np.array([[1.0, 2.0]]), np.array([[-1.0]])
    A_prev = np.array([[1.0, -1.0, 2.0], [-1.0, 1.0, 1.0]])  # W @ A_prev + b == Z_SAMPLE
    A, Z = layer_forward(A_prev, W, b, activation)
    np.testing.assert_array_equal(Z, Z_SAMPLE)
    np.testing.assert_allclose(A, expected, rtol=1e-15)
    assert not np.shares_memory(A, Z)


def test_forward_pass_shapes_and_caches():
    params = init_params([4, 5, 3], seed=0)
    X_cols = np.random.RandomState(1).randn(4, 7)
    AL, caches = forward_pass(params, X_cols, ["tanh", "softmax"])
    assert AL.shape == (3, 7)
    assert [(A.shape, Z.shape) for A, Z in caches] == [((4, 7), (5, 7)), ((5, 7), (3, 7))]
    assert caches[0][0] is X_cols
    np.testing.assert_array_equal(caches[1][0], np.tanh(caches[0][1]))


def test_softmax_columns_are_probabilities():
    Z_cols = np.random.RandomState(0).randn(4, 6) * 5
    A, _ = layer_forward(Z_cols, np.eye(4), np.zeros((4, 1)), "softmax")
    assert (A > 0).all()
    np.testing.assert_allclose(A.sum(axis=0), 1.0, rtol=0, atol=1e-15)
    expected = np.exp(Z_cols) / np.exp(Z_cols).sum(axis=0)
    np.testing.assert_allclose(A, expected, rtol=1e-14)


# Underflow to 0 is fine (and ignored by NumPy's defaults); overflow, inf - inf and log(0) are not.
NO_OVERFLOW = dict(over="raise", invalid="raise", divide="raise")


def test_softmax_and_sigmoid_are_stable_for_large_inputs():
    with np.errstate(**NO_OVERFLOW):
        Z_large = np.array([[1000.0, -1000.0], [1001.0, 1000.0], [1002.0, 0.0]])
        A, _ = layer_forward(Z_large, np.eye(3), np.zeros((3, 1)), "softmax")
        S, _ = layer_forward(np.array([[-1000.0, 0.0], [0.0, 1000.0]]), np.eye(2), np.zeros((2, 1)), "sigmoid")
    e = np.exp([0.0, 1.0, 2.0])
    np.testing.assert_allclose(A[:, 0], e / e.sum(), rtol=1e-14)
    np.testing.assert_array_equal(A[:, 1], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(S, [[0.0, 0.5], [0.5, 1.0]])


# --- targets and cost --------------------------------------------------------------------------


def test_targets():
    np.testing.assert_array_equal(targets(np.array([1, 0, 1]), "sigmoid", 1), [[1.0, 0.0, 1.0]])
    one_hot = [[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]]
    np.testing.assert_array_equal(targets(np.array([2, 0, 1, 2]), "softmax", 3), one_hot)
    assert targets(np.array([2, 0]), "softmax", 3).dtype == np.float64


@pytest.mark.parametrize(
    ("y", "output", "n_out", "message"),
    [
        ([0, 2], "sigmoid", 1, "labels 0 or 1"),
        ([0, 1], "sigmoid", 2, "1 unit"),
        ([0, 3], "softmax", 3, "labels 0..2"),
        ([0, -1], "softmax", 3, "labels 0..2"),
        ([0.5, 1], "softmax", 3, "integer labels"),
        ([[0], [1]], "sigmoid", 1, "shape"),
        ([], "sigmoid", 1, "shape"),
        ([0, 1], "relu", 1, "output activation 'relu' is unknown"),
    ],
)
def test_targets_rejects_bad_labels(y, output, n_out, message):
    with pytest.raises(ValueError, match=message):
        targets(np.array(y), output, n_out)


def test_binary_cross_entropy_hand_case():
    cost = compute_cost(np.array([[0.8, 0.4]]), np.array([[1.0, 0.0]]), "sigmoid")
    assert cost == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2, rel=1e-15)
    assert isinstance(cost, float)


def test_categorical_cross_entropy_hand_case():
    AL = np.array([[0.7, 0.2], [0.2, 0.5], [0.1, 0.3]])
    cost = compute_cost(AL, targets(np.array([0, 2]), "softmax", 3), "softmax")
    assert cost == pytest.approx(-(np.log(0.7) + np.log(0.3)) / 2, rel=1e-15)


def test_cost_of_saturated_probabilities_is_finite_and_capped():
    with np.errstate(**NO_OVERFLOW):
        right = compute_cost(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), "sigmoid")
        wrong = compute_cost(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]), "sigmoid")
        wrong_class = compute_cost(np.array([[0.0], [1.0]]), np.array([[1.0], [0.0]]), "softmax")
    assert right == pytest.approx(0.0, abs=1e-14)
    # rel=1e-4, not tighter: 1 - EPSILON rounds in float64, so 1 - (1 - EPSILON) is not exactly EPSILON.
    assert wrong == pytest.approx(-np.log(network.EPSILON), rel=1e-4)
    assert wrong_class == pytest.approx(-np.log(network.EPSILON), rel=1e-4)


def test_cost_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        compute_cost(np.full((1, 3), 0.5), np.ones((3, 1)), "sigmoid")


# --- backward and update -----------------------------------------------------------------------


def test_output_delta_is_al_minus_y():
    AL, Y = np.array([[0.7, 0.2], [0.3, 0.8]]), np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(output_delta(AL, Y, "softmax"), AL - Y)


def test_layer_backward_averages_over_examples():
    dZ = np.array([[1.0, 3.0]])  # 1 unit, m = 2
    A_prev = np.array([[2.0, 4.0], [1.0, -1.0], [0.0, 5.0]])  # 3 inputs
    W = np.array([[0.5, -1.0, 2.0]])
    dA_prev, dW, db = layer_backward(dZ, A_prev, W)
    np.testing.assert_array_equal(dW, [[(2 + 12) / 2, (1 - 3) / 2, (0 + 15) / 2]])
    np.testing.assert_array_equal(db, [[2.0]])
    np.testing.assert_array_equal(dA_prev, [[0.5, 1.5], [-1.0, -3.0], [2.0, 6.0]])


@pytest.mark.parametrize(
    ("activation", "derivative"),
    [
        ("relu", lambda Z: (Z > 0).astype(float)),
        ("sigmoid", lambda Z: np.exp(-Z) / (1 + np.exp(-Z)) ** 2),
        ("tanh", lambda Z: 1 / np.cosh(Z) ** 2),
        ("linear", np.ones_like),
    ],
)
def test_hidden_delta_multiplies_by_the_derivative(activation, derivative):
    Z = np.array([[-2.0, -0.5, 0.5], [1.0, 2.0, -3.0]])
    dA = np.array([[1.5, -2.0, 0.5], [-1.0, 3.0, 2.0]])
    dZ = hidden_delta(dA, Z, activation)
    np.testing.assert_allclose(dZ, dA * derivative(Z), rtol=1e-14)
    assert not np.shares_memory(dZ, dA)


def test_hidden_delta_rejects_an_output_activation():
    with pytest.raises(ValueError, match="hidden activation 'softmax' is unknown"):
        hidden_delta(np.ones((2, 1)), np.ones((2, 1)), "softmax")


def test_apply_update_returns_new_arrays():
    params = {"W1": np.array([[1.0, 2.0]]), "b1": np.array([[3.0]])}
    grads = {"dW1": np.array([[10.0, -10.0]]), "db1": np.array([[1.0]])}
    before = copy.deepcopy(params)
    updated = apply_update(params, grads, 0.1)
    np.testing.assert_array_equal(updated["W1"], [[0.0, 3.0]])
    np.testing.assert_array_equal(updated["b1"], [[2.9]])
    for name in params:
        np.testing.assert_array_equal(params[name], before[name])
