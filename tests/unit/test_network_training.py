"""The NumPy network trained: one epoch as the per-layer sequence, training and prediction, and the validation of an
architecture."""

import copy

import numpy as np
import pytest

from lnn_core.ml.metrics import accuracy, predict, predict_proba
from lnn_core.ml.network import (
    TRANSPOSE_ROWS,
    apply_update,
    backward_pass,
    compute_cost,
    forward_pass,
    hidden_delta,
    init_params,
    layer_backward,
    layer_forward,
    output_delta,
    targets,
    to_columns,
    validate_architecture,
)
from lnn_core.ml.training import gradient_descent_epoch, train_reference
from tests.support.arrays import blobs_around

# --- one epoch ---------------------------------------------------------------------------------


def epoch_problem():
    params = init_params([3, 4, 3, 2], seed=5)
    X_cols = np.random.RandomState(6).randn(3, 8)
    Y = targets(np.random.RandomState(7).randint(0, 2, size=8), "softmax", 2)
    return params, X_cols, Y, ["relu", "tanh", "softmax"]


def test_gradient_descent_epoch_is_the_per_layer_sequence_bit_for_bit():
    params, X_cols, Y, activations = epoch_problem()
    learning_rate = 0.3
    # The sequence the engine runs one layer per invocation.
    A, Z = [X_cols], [None]
    for layer in (1, 2, 3):
        A_l, Z_l = layer_forward(A[-1], params[f"W{layer}"], params[f"b{layer}"], activations[layer - 1])
        A.append(A_l)
        Z.append(Z_l)
    cost = compute_cost(A[3], Y, "softmax")
    dZ = output_delta(A[3], Y, "softmax")
    grads = {}
    for layer in (3, 2, 1):
        dA_prev, grads[f"dW{layer}"], grads[f"db{layer}"] = layer_backward(dZ, A[layer - 1], params[f"W{layer}"])
        if layer > 1:
            dZ = hidden_delta(dA_prev, Z[layer - 1], activations[layer - 2])
    expected = apply_update(params, grads, learning_rate)

    new_params, epoch_cost = gradient_descent_epoch(params, X_cols, Y, activations, learning_rate)
    assert epoch_cost == cost
    assert list(new_params) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(new_params[name], expected[name])
        assert not np.array_equal(new_params[name], params[name])


def test_gradient_descent_epoch_is_pure():
    params, X_cols, Y, activations = epoch_problem()
    before = copy.deepcopy((params, X_cols, Y, activations))
    new_params, _ = gradient_descent_epoch(params, X_cols, Y, activations, 0.5)
    again, _ = gradient_descent_epoch(params, X_cols, Y, activations, 0.5)
    for original, now in zip(before[:3], (params, X_cols, Y)):
        if isinstance(original, dict):
            assert list(now) == list(original)
            for name in original:
                np.testing.assert_array_equal(now[name], original[name])
        else:
            np.testing.assert_array_equal(now, original)
    assert activations == before[3]
    for name in params:
        assert not np.shares_memory(new_params[name], params[name])
        np.testing.assert_array_equal(new_params[name], again[name])


def test_backward_pass_keys_and_shapes():
    params, X_cols, Y, activations = epoch_problem()
    AL, caches = forward_pass(params, X_cols, activations)
    grads = backward_pass(params, caches, AL, Y, activations)
    assert sorted(grads) == sorted(f"d{name}" for name in params)
    assert all(grads[f"d{name}"].shape == value.shape for name, value in params.items())


# --- training and prediction -------------------------------------------------------------------


def test_train_reference_separates_two_blobs():
    X, y = blobs_around([[-1.5, -1.5], [1.5, 1.5]])
    params, costs = train_reference(
        X, y, neurons=[4, 1], activations=["tanh", "sigmoid"], learning_rate=0.5, epochs=200, seed=1
    )
    assert len(costs) == 200
    assert costs[0] > 0.5 and costs[-1] < 0.1 * costs[0]
    assert all(later <= earlier for earlier, later in zip(costs, costs[1:]))
    assert accuracy(params, X, y, ["tanh", "sigmoid"]) >= 0.98


def test_train_reference_separates_three_blobs_with_softmax():
    X, y = blobs_around([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    activations = ["relu", "softmax"]
    params, costs = train_reference(
        X, y, neurons=[8, 3], activations=activations, learning_rate=0.3, epochs=300, seed=2
    )
    assert costs[-1] < 0.2 * costs[0]
    assert accuracy(params, X, y, activations) >= 0.97
    assert predict_proba(params, X, activations).shape == (300, 3)


def test_train_reference_is_reproducible_and_matches_the_epoch_loop():
    X, y = blobs_around([[-1.0, 1.0], [1.0, -1.0]], per_class=20)
    options = dict(neurons=[3, 1], activations=["relu", "sigmoid"], learning_rate=0.1, epochs=5, seed=4)
    params, costs = train_reference(X, y, **options)
    again, costs_again = train_reference(X, y, **options)
    assert costs == costs_again
    manual = init_params([2, 3, 1], seed=4)
    for epoch in range(5):
        manual, cost = gradient_descent_epoch(manual, to_columns(X), targets(y, "sigmoid", 1), ["relu", "sigmoid"], 0.1)
        assert cost == costs[epoch]
    for name in params:
        np.testing.assert_array_equal(params[name], again[name])
        np.testing.assert_array_equal(params[name], manual[name])


@pytest.mark.parametrize("rows", [1, TRANSPOSE_ROWS - 1, TRANSPOSE_ROWS, 2 * TRANSPOSE_ROWS + 7])
@pytest.mark.parametrize(("source", "dtype"), [("float64", "float64"), ("float64", "float32"), ("uint8", "float32")])
def test_to_columns_is_the_transposing_copy_bit_for_bit_in_blocks_of_rows(rows, source, dtype):
    rng = np.random.default_rng(rows)
    X = (rng.standard_normal((rows, 13)) * 1e3).astype(source)
    expected = np.ascontiguousarray(X.astype(np.float64).T, dtype=dtype)
    columns = to_columns(X, dtype)
    assert columns.dtype == np.dtype(dtype) and columns.flags.c_contiguous
    assert columns.tobytes() == expected.tobytes()


def test_train_reference_does_not_scale_uint8_input():
    X = np.random.RandomState(0).randint(0, 256, size=(20, 3)).astype(np.uint8)
    y = (X[:, 0] > 127).astype(int)
    options = dict(neurons=[2, 1], activations=["relu", "sigmoid"], learning_rate=1e-4, epochs=3, seed=0)
    params, costs = train_reference(X, y, **options)
    as_float, costs_float = train_reference(X.astype(np.float64), y, **options)
    assert costs == costs_float
    np.testing.assert_array_equal(params["W1"], as_float["W1"])
    assert not np.array_equal(params["W1"], train_reference(X / 255.0, y, **options)[0]["W1"])


@pytest.mark.parametrize(
    ("X", "y", "options", "message"),
    [
        (np.zeros((4, 2)), np.zeros(3), {}, "4 rows but there are 3 labels"),
        (np.zeros(4), np.zeros(4), {}, r"shape \(m, n0\)"),
        (np.zeros((4, 2)), np.zeros(4), {"epochs": -1}, "epochs >= 0"),
        (np.zeros((4, 2)), np.zeros(4), {"learning_rate": 0.0}, "learning_rate > 0"),
        (np.zeros((4, 2)), np.zeros(4), {"activations": ["foo", "sigmoid"]}, "layer 1 activation 'foo'"),
    ],
)
def test_train_reference_rejects_bad_input(X, y, options, message):
    arguments = dict(neurons=[2, 1], activations=["relu", "sigmoid"], learning_rate=0.1, epochs=1) | options
    with pytest.raises(ValueError, match=message):
        train_reference(X, y, **arguments)


def test_predict_sigmoid_thresholds_above_one_half():
    params = {"W1": np.array([[1.0]]), "b1": np.array([[0.0]])}
    X = np.array([[-2.0], [0.0], [1e-9], [3.0]])
    np.testing.assert_allclose(predict_proba(params, X, ["sigmoid"]), 1 / (1 + np.exp(-X[:, 0])), rtol=1e-15)
    labels = predict(params, X, ["sigmoid"])
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])
    assert labels.dtype == np.int64
    assert accuracy(params, X, np.array([0, 1, 1, 0]), ["sigmoid"]) == 0.5


def test_predict_softmax_takes_the_most_probable_class():
    params = {"W1": np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), "b1": np.zeros((3, 1))}
    X = np.array([[3.0, 1.0], [0.0, 2.0], [-3.0, -3.0]])
    proba = predict_proba(params, X, ["softmax"])
    assert proba.shape == (3, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-15)
    np.testing.assert_array_equal(predict(params, X, ["softmax"]), [0, 1, 2])


def test_accuracy_rejects_labels_of_the_wrong_shape():
    params = {"W1": np.array([[1.0]]), "b1": np.array([[0.0]])}
    with pytest.raises(ValueError, match="one per row"):
        accuracy(params, np.zeros((4, 1)), np.zeros((4, 1)), ["sigmoid"])


# --- architecture validation -------------------------------------------------------------------


def test_valid_architectures_pass():
    validate_architecture(3, [4, 4, 4, 4, 1], ["relu", "sigmoid", "tanh", "linear", "sigmoid"])
    validate_architecture(3, [2], ["softmax"])


@pytest.mark.parametrize(
    ("neurons", "activations", "message"),
    [
        (
            [4, 4, 1],
            ["relu", "foo", "sigmoid"],
            "layer 2 activation 'foo' is unknown for a hidden layer; use one of relu, sigmoid, tanh, linear",
        ),
        ([4, 1], ["softmax", "sigmoid"], "layer 1 activation 'softmax' is unknown for a hidden layer"),
        (
            [4, 1],
            ["relu", "relu"],
            "layer 2 activation 'relu' is unknown for an output layer; use one of sigmoid, softmax",
        ),
        ([4, 2], ["relu", "sigmoid"], "layer 2 is a sigmoid output with 2 units; it needs 1"),
        ([4, 1], ["relu", "softmax"], "layer 2 is a softmax output with 1 unit; it needs at least 2"),
        ([4, 1], ["relu"], "2 layer sizes but 1 activations"),
        ([], [], "at least one layer"),
        ([4, 0], ["relu", "softmax"], "layer 2 must be a positive number of units; got 0"),
    ],
)
def test_validate_architecture_names_the_bad_layer(neurons, activations, message):
    with pytest.raises(ValueError, match=message):
        validate_architecture(3, neurons, activations)


def test_forward_pass_checks_activations_against_the_params():
    params = init_params([3, 4, 1], seed=0)
    with pytest.raises(ValueError, match="2 layer sizes but 3 activations"):
        forward_pass(params, np.zeros((3, 2)), ["relu", "relu", "sigmoid"])
