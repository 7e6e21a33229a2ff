"""Training data files: scaling, shapes and the errors a person can act on."""

import re

import numpy as np
import pytest

from lnn_core.errors import LnnInputError
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.dataset import load_training_data
from tests.support.arrays import npz_bytes


def test_uint8_images_are_scaled_and_labels_flattened():
    data = load_training_data(npz_bytes(X=np.full((3, 4), 255, np.uint8), y=np.ones((3, 1))), source="d")
    assert data.X.dtype == np.float64 and np.all(data.X == 1.0) and data.y.shape == (3,) and data.X_test is None


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"X": np.zeros(3), "y": np.zeros(3)}, "X must be a non-empty 2-D array"),
        ({"X": np.zeros((3, 2)), "y": np.zeros(3), "X_test": np.zeros((2, 2))}, "only one of X_test and y_test"),
        (
            {"X": np.zeros((3, 2)), "y": np.zeros(3), "X_test": np.zeros((2, 5)), "y_test": np.zeros(2)},
            "X_test has 5 features but X has 2",
        ),
        ({"X": np.array([[1.0, np.inf]]), "y": np.zeros(1)}, "contains NaN or Inf"),
        ({"X": np.array([["a", "b"]]), "y": np.zeros(1)}, "must be numeric"),
        ({"X": np.zeros((3, 2)), "y": np.zeros((3, 2, 2))}, "y must be a 1-D array"),
        (
            {"X": np.zeros((3, 2)), "y": np.zeros(3), "X_test": np.zeros((2, 2)), "y_test": np.zeros((2, 2))},
            "y_test has shape (2, 2) but y (3,)",
        ),
        (
            {"X": np.zeros((3, 2)), "y": np.zeros(3), "classes": np.array([1, 2])},
            "classes must be a non-empty 1-D array of class names",
        ),
        (
            {"X": np.zeros((3, 2)), "y": np.zeros(3), "example_shape": np.array([3])},
            "example_shape (3,) holds 3 values but X has 2",
        ),
        (
            {"X": np.zeros((3, 2)), "y": np.zeros(3), "example_shape": np.array([2.0])},
            "example_shape must be a 1-D array of positive integers",
        ),
    ],
)
def test_bad_files(arrays, message):
    with pytest.raises(LnnInputError, match=re.escape(message)):
        load_training_data(npz_bytes(**arrays), source="d")


def test_not_an_npz():
    with pytest.raises(LnnInputError, match="d is not a readable .npz file"):
        load_training_data(b"hello", source="d")


def test_labels_must_fit_the_output_layer():
    config = TrainingConfig.from_parameters(
        {
            "epochs": 1,
            "learning_rate": 0.1,
            "neurons": [4, 3],
            "activations": ["relu", "softmax"],
            "data": "runs/a/d.npz",
        }
    )
    load_training_data(npz_bytes(X=np.zeros((3, 2)), y=np.array([0, 1, 2])), source="d").check_fits(config)
    with pytest.raises(LnnInputError, match="class labels 0..2"):
        load_training_data(npz_bytes(X=np.zeros((3, 2)), y=np.array([0, 1, 3])), source="d").check_fits(config)


def config_of(neurons, activations):
    return TrainingConfig.from_parameters(
        {"epochs": 1, "learning_rate": 0.1, "neurons": neurons, "activations": activations, "data": "runs/a/d.npz"}
    )


def test_class_names_and_the_example_shape_are_optional_arrays():
    data = load_training_data(
        npz_bytes(
            X=np.zeros((2, 12), np.uint8),
            y=np.array([0, 1]),
            classes=np.array(["non-cat", "cat"]),
            example_shape=np.array([2, 2, 3]),
        ),
        source="d",
    )
    assert data.classes == ("non-cat", "cat") and data.example_shape == (2, 2, 3)
    assert load_training_data(npz_bytes(X=np.zeros((2, 1)), y=np.zeros(2)), source="d").classes is None
    assert load_training_data(
        npz_bytes(X=np.zeros((2, 1)), y=np.zeros(2), classes=np.array([b"a", b"b"])), source="d"
    ).classes == ("a", "b")


def test_more_classes_than_the_output_learns():
    data = load_training_data(
        npz_bytes(X=np.zeros((2, 1)), y=np.array([0, 1]), classes=np.array(["a", "b", "c"])), source="d"
    )
    with pytest.raises(
        LnnInputError, match="the data has 3 classes \\(a, b, c\\) but a sigmoid output of 1 neuron\\(s\\) learns 2"
    ):
        data.check_fits(config_of([1], ["sigmoid"]))
    data.check_fits(config_of([3], ["softmax"]))


def test_regression_targets_fit_a_linear_output():
    single = load_training_data(npz_bytes(X=np.zeros((3, 2)), y=np.array([0.5, -1.25, 3.0])), source="d")
    single.check_fits(config_of([4, 1], ["relu", "linear"]))
    several = load_training_data(
        npz_bytes(X=np.zeros((3, 2)), y=np.full((3, 2), 0.5), X_test=np.zeros((1, 2)), y_test=np.zeros((1, 2))),
        source="d",
    )
    assert several.y.shape == (3, 2)
    several.check_fits(config_of([2], ["linear"]))
    with pytest.raises(LnnInputError, match="y holds 2 target\\(s\\) per example but the linear output has 1 neuron"):
        several.check_fits(config_of([1], ["linear"]))
    with pytest.raises(LnnInputError, match="y must be a 1-D array of class labels for a sigmoid output"):
        several.check_fits(config_of([1], ["sigmoid"]))
    with pytest.raises(LnnInputError, match="class labels 0..1"):  # real values are no class labels
        single.check_fits(config_of([1], ["sigmoid"]))


def test_an_hdf5_file_is_named_as_such_not_as_pickled_data():
    with pytest.raises(LnnInputError, match="d is an HDF5 file, not an .npz; convert it with `lnn convert"):
        load_training_data(b"\x89HDF\r\n\x1a\n" + bytes(100), source="d")
    with pytest.raises(LnnInputError) as caught:
        load_training_data(b"a,b\n1,2\n", source="d")
    assert "pickle" not in str(caught.value) and "not a zip archive" in str(caught.value)
