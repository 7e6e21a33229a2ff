"""The linear (regression) output: targets, squared-error cost, delta, predictions, rmse and r2."""

import numpy as np
import pytest

from lnn_core.ml import network, training
from lnn_core.ml.metrics import accuracy, predict, predict_proba, r2, rmse
from lnn_core.ml.network import (
    OUTPUT_ACTIVATIONS,
    REGRESSION_OUTPUTS,
    compute_cost,
    loss_sum,
    output_delta,
    targets,
    validate_architecture,
)
from lnn_core.ml.training import train_reference


def test_linear_is_a_regression_output_not_yet_an_output_activation():
    assert REGRESSION_OUTPUTS == ("linear",)
    assert "linear" not in OUTPUT_ACTIVATIONS  # config.py validates against OUTPUT_ACTIVATIONS
    validate_architecture(3, [4, 1], ["relu", "linear"])
    validate_architecture(3, [4, 3], ["tanh", "linear"])
    validate_architecture(3, [2], ["linear"])


def test_regression_targets():
    Y = targets(np.array([1.5, -2, 3]), "linear", 1)
    np.testing.assert_array_equal(Y, [[1.5, -2.0, 3.0]])
    assert Y.dtype == np.float64
    Y = targets(np.array([[1, 2], [3, 4], [5, 6]]), "linear", 2)
    np.testing.assert_array_equal(Y, [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]])
    assert Y.dtype == np.float64 and Y.flags.c_contiguous
    np.testing.assert_array_equal(targets(np.array([[1.0], [2.0]]), "linear", 1), [[1.0, 2.0]])


@pytest.mark.parametrize(
    ("y", "n_out", "message"),
    [
        ([1.0, 2.0], 2, r"needs targets of shape \(m, 2\)"),
        ([[1.0, 2.0]], 3, r"needs targets of shape \(m, 3\)"),
        ([], 1, "m >= 1"),
        ([[[1.0]]], 1, r"shape \(m,\) or \(m, k\)"),
        ([1.0, np.nan], 1, "finite"),
        ([1.0, np.inf], 1, "finite"),
        (["a", "b"], 1, "must be numbers"),
    ],
)
def test_regression_targets_reject_bad_input(y, n_out, message):
    with pytest.raises(ValueError, match=message):
        targets(np.array(y), "linear", n_out)


def test_squared_error_by_hand():
    AL, Y = np.array([[1.0, 3.0, 5.0]]), np.array([[1.0, 2.0, 7.0]])
    assert loss_sum(AL, Y, "linear") == 2.5  # (0 + 1 + 4) / 2
    assert compute_cost(AL, Y, "linear") == 2.5 / 3
    AL, Y = np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [3.0, 0.0]])
    assert compute_cost(AL, Y, "linear") == (1 + 4 + 9) / (2 * 2)
    np.testing.assert_array_equal(output_delta(AL, Y, "linear"), AL - Y)


# y = 2x + 1 exactly, from a single linear layer.
EXACT = {"W1": np.array([[2.0]]), "b1": np.array([[1.0]])}
X3 = np.array([[0.0], [1.0], [2.0]])


def test_predictions_of_a_linear_output():
    np.testing.assert_array_equal(predict_proba(EXACT, X3, ["linear"]), [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(predict(EXACT, X3, ["linear"]), [1.0, 3.0, 5.0])
    two = {"W1": np.array([[2.0], [-1.0]]), "b1": np.array([[1.0], [0.0]])}
    np.testing.assert_array_equal(predict_proba(two, X3, ["linear"]), [[1.0, 0.0], [3.0, -1.0], [5.0, -2.0]])
    with pytest.raises(ValueError, match="accuracy needs a classification output"):
        accuracy(EXACT, X3, np.array([1.0, 3.0, 5.0]), ["linear"])


def test_rmse_and_r2_by_hand():
    y = np.array([1.0, 2.0, 7.0])  # residuals 0, 1, -2
    assert rmse(EXACT, X3, y, ["linear"]) == pytest.approx(np.sqrt(5 / 3), rel=1e-15)
    # mean 10/3: total sum of squares (49 + 16 + 121) / 9 = 186 / 9
    assert r2(EXACT, X3, y, ["linear"]) == pytest.approx(1 - 5 / (186 / 9), rel=1e-14)
    assert rmse(EXACT, X3, np.array([1.0, 3.0, 5.0]), ["linear"]) == 0.0
    assert r2(EXACT, X3, np.array([1.0, 3.0, 5.0]), ["linear"]) == 1.0
    assert r2(EXACT, X3, np.array([[1.0], [3.0], [5.0]]), ["linear"]) == 1.0


def test_r2_averages_the_outputs_and_handles_constant_targets():
    two = {"W1": np.array([[2.0], [0.0]]), "b1": np.array([[1.0], [4.0]])}  # predicts (2x + 1, 4)
    y = np.array([[1.0, 4.0], [2.0, 4.0], [7.0, 4.0]])  # second output constant and exactly predicted
    assert r2(two, X3, y, ["linear"]) == pytest.approx((1 - 5 / (186 / 9) + 1.0) / 2, rel=1e-14)
    y[:, 1] = 5.0  # constant, predicted wrong: that output scores 0 (as scikit-learn)
    assert r2(two, X3, y, ["linear"]) == pytest.approx((1 - 5 / (186 / 9)) / 2, rel=1e-14)
    assert rmse(two, X3, y, ["linear"]) == pytest.approx(np.sqrt((5 + 3) / 6), rel=1e-15)


def test_metrics_reject_classification_outputs_and_mismatched_targets():
    params = {"W1": np.array([[1.0]]), "b1": np.array([[0.0]])}
    with pytest.raises(ValueError, match="rmse needs a regression output"):
        rmse(params, X3, np.array([0, 1, 1]), ["sigmoid"])
    with pytest.raises(ValueError, match="r2 needs a regression output"):
        r2(params, X3, np.array([0, 1, 1]), ["sigmoid"])
    with pytest.raises(ValueError, match="3 rows but there are 2 targets"):
        rmse(EXACT, X3, np.array([1.0, 2.0]), ["linear"])


def test_train_reference_fits_a_linear_function():
    rng = np.random.RandomState(0)
    X = rng.randn(200, 3)
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.01 * rng.randn(200)
    params, costs = train_reference(X, y, neurons=[1], activations=["linear"], learning_rate=0.1, epochs=200, seed=0)
    assert costs[-1] < 1e-3 * costs[0]
    np.testing.assert_allclose(params["W1"], [[1.5, -2.0, 0.5]], atol=0.01)
    assert rmse(params, X, y, ["linear"]) < 0.02
    assert r2(params, X, y, ["linear"]) > 0.999
    # a hidden layer, two outputs, mini-batches and adam
    Y2 = np.stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]], axis=1)
    params, costs = train_reference(
        X,
        Y2,
        neurons=[16, 2],
        activations=["tanh", "linear"],
        learning_rate=0.01,
        epochs=150,
        seed=1,
        batch_size=32,
        optimizer="adam",
    )
    assert costs[-1] < 0.2 * costs[0]
    assert r2(params, X, Y2, ["tanh", "linear"]) > 0.8
    assert predict_proba(params, X, ["tanh", "linear"]).shape == (200, 2)


def test_gradient_descent_epoch_works_for_a_linear_output():
    params = network.init_params([2, 3, 1], seed=0)
    X_cols = np.random.RandomState(1).randn(2, 5)
    Y = targets(np.arange(5.0), "linear", 1)
    AL, _ = network.forward_pass(params, X_cols, ["relu", "linear"])
    _, cost = training.gradient_descent_epoch(params, X_cols, Y, ["relu", "linear"], 0.1)
    assert cost == ((AL - Y) ** 2).sum() / 2 / 5
