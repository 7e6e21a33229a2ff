"""Predictions and metrics of a trained network (network.py's forward pass), with examples as ROWS.

X (m, n0), rounded to the model's dtype (that of its weights) as training data are; labels y (m,) (0/1 for a
sigmoid output, class indices for softmax) or, for a linear (regression) output, real targets y (m,) or (m, k).
Classification outputs are scored by `accuracy`, regression outputs by `rmse` and `r2`.
"""

from collections.abc import Sequence

import numpy as np

from lnn_core.errors import LnnInputError
from lnn_core.ml.network import REGRESSION_OUTPUTS, Params, forward_pass, targets, to_columns


def predict_proba(params: Params, X_rows: np.ndarray, activations: Sequence[str]) -> np.ndarray:
    """X (m, n0) -> output probabilities: (m,) of class 1 for a sigmoid output, (m, C) for softmax.

    For a linear output, the predicted values: (m,) with one output unit, (m, k) with k.
    """
    AL, _ = forward_pass(params, to_columns(X_rows, params["W1"].dtype), activations)
    single = activations[-1] == "sigmoid" or (activations[-1] in REGRESSION_OUTPUTS and AL.shape[0] == 1)
    return AL[0] if single else AL.T


def predict(params: Params, X_rows: np.ndarray, activations: Sequence[str]) -> np.ndarray:
    """X (m, n0) -> int64 labels (m,): probability > 0.5 for a sigmoid output, the most probable class for softmax.

    For a linear output, the predicted values (in the model's dtype, as `predict_proba`).
    """
    if activations[-1] in REGRESSION_OUTPUTS:
        return predict_proba(params, X_rows, activations)
    AL, _ = forward_pass(params, to_columns(X_rows, params["W1"].dtype), activations)
    return output_labels(AL, activations[-1])


def output_labels(AL: np.ndarray, output_activation: str) -> np.ndarray:
    """A classifier's outputs AL (n_L, m) -> int64 labels (m,): AL > 0.5 for a sigmoid, the largest for softmax."""
    return (AL[0] > 0.5).astype(np.int64) if output_activation == "sigmoid" else AL.argmax(axis=0)


def accuracy(params: Params, X_rows: np.ndarray, y: np.ndarray, activations: Sequence[str]) -> float:
    """Fraction of the m rows of X (m, n0) whose predicted label equals y (m,) (classification outputs only)."""
    if activations[-1] in REGRESSION_OUTPUTS:
        raise LnnInputError(f"accuracy needs a classification output, not {activations[-1]!r}; use rmse or r2")
    AL, _ = forward_pass(params, to_columns(X_rows, params["W1"].dtype), activations)
    return output_accuracy(AL, y, activations[-1])


def output_accuracy(AL: np.ndarray, y: np.ndarray, output_activation: str) -> float:
    """`accuracy` from a classifier's outputs AL (n_L, m) and the labels y (m,)."""
    labels = output_labels(AL, output_activation)
    y = np.asarray(y)
    if y.shape != labels.shape:
        raise LnnInputError(f"labels must have shape {labels.shape}, one per row of X; got {y.shape}")
    return float(np.mean(labels == y))


def _regression_outputs(
    params: Params, X_rows: np.ndarray, y: np.ndarray, activations: Sequence[str], metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """(AL, Y), both (k, m), for a linear output; LnnInputError for another output or mismatched targets."""
    if activations[-1] not in REGRESSION_OUTPUTS:
        raise LnnInputError(
            f"{metric} needs a regression output ({', '.join(REGRESSION_OUTPUTS)}), "
            f"not {activations[-1]!r}; use accuracy"
        )
    X_cols = to_columns(X_rows, params["W1"].dtype)
    AL, _ = forward_pass(params, X_cols, activations)
    Y = targets(y, activations[-1], AL.shape[0], AL.dtype)
    if Y.shape != AL.shape:
        raise LnnInputError(f"X has {AL.shape[1]} rows but there are {Y.shape[1]} targets; give one per row")
    return AL, Y


def rmse(params: Params, X_rows: np.ndarray, y: np.ndarray, activations: Sequence[str]) -> float:
    """Root mean squared error of a linear output's predictions for X (m, n0) against y (m,) or (m, k).

    sqrt(mean((a - y)^2)) over all m * k predicted values.
    """
    return output_rmse(*_regression_outputs(params, X_rows, y, activations, "rmse"))


def output_rmse(AL: np.ndarray, Y: np.ndarray) -> float:
    """`rmse` from a linear output's AL and targets Y, both (k, m)."""
    D = AL - Y
    return float(np.sqrt((D * D).mean()))


def r2(params: Params, X_rows: np.ndarray, y: np.ndarray, activations: Sequence[str]) -> float:
    """Coefficient of determination of a linear output's predictions for X (m, n0) against y (m,) or (m, k).

    Per output unit 1 - sum((y - a)^2) / sum((y - mean(y))^2), averaged over the k units (as
    scikit-learn's r2_score); a unit whose targets are all equal scores 1.0 if predicted exactly,
    else 0.0.
    """
    return output_r2(*_regression_outputs(params, X_rows, y, activations, "r2"))


def output_r2(AL: np.ndarray, Y: np.ndarray) -> float:
    """`r2` from a linear output's AL and targets Y, both (k, m)."""
    residual = ((Y - AL) ** 2).sum(axis=1)
    total = ((Y - Y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    constant = total == 0
    scores = np.where(constant, np.where(residual == 0, 1.0, 0.0), 1.0 - residual / np.where(constant, 1.0, total))
    return float(scores.mean())
