"""Training data files: scaling, shapes and the errors a person can act on."""

import io

import numpy as np
import pytest

from lnn_core.config import TrainingConfig
from lnn_core.dataset import load_training_data
from lnn_core.errors import LnnInputError


def npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_uint8_images_are_scaled_and_labels_flattened():
    data = load_training_data(npz(X=np.full((3, 4), 255, np.uint8), y=np.ones((3, 1))), source="d")
    assert data.X.dtype == np.float64 and np.all(data.X == 1.0) and data.y.shape == (3,) and data.X_test is None


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"X": np.zeros(3), "y": np.zeros(3)}, "X must be a non-empty 2-D array"),
        ({"X": np.zeros((3, 2)), "y": np.zeros(3), "X_test": np.zeros((2, 2))}, "only one of X_test and y_test"),
        ({"X": np.zeros((3, 2)), "y": np.zeros(3), "X_test": np.zeros((2, 5)), "y_test": np.zeros(2)}, "X_test has 5 features but X has 2"),
        ({"X": np.array([[1.0, np.inf]]), "y": np.zeros(1)}, "contains NaN or Inf"),
        ({"X": np.array([["a", "b"]]), "y": np.zeros(1)}, "must be numeric"),
        ({"X": np.zeros((3, 2)), "y": np.zeros((3, 2))}, "y must be a 1-D array"),
    ],
)
def test_bad_files(arrays, message):
    with pytest.raises(LnnInputError, match=message.replace("(", r"\(")):
        load_training_data(npz(**arrays), source="d")


def test_not_an_npz():
    with pytest.raises(LnnInputError, match="d is not a readable .npz file"):
        load_training_data(b"hello", source="d")


def test_labels_must_fit_the_output_layer():
    config = TrainingConfig.from_parameters(
        {"epochs": 1, "learning_rate": 0.1, "neurons": [4, 3], "activations": ["relu", "softmax"], "data": "runs/a/d.npz"}
    )
    load_training_data(npz(X=np.zeros((3, 2)), y=np.array([0, 1, 2])), source="d").check_fits(config)
    with pytest.raises(LnnInputError, match="class labels 0..2"):
        load_training_data(npz(X=np.zeros((3, 2)), y=np.array([0, 1, 3])), source="d").check_fits(config)
