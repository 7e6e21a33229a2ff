"""LNN 1.0 end to end: its parameters.json, verbatim, and an HDF5 file in LNN's layout, trained by `lnn local`.

The file LNN 1.0 shipped: 20-7-5-1 (relu, relu, relu, sigmoid), learning rate 0.0075, mini-batches of 64, and a
cost threshold of 0.0019 that ends the run early. It gives no seed nor init, so `lnn local`'s defaults apply
(seed 1, he) and the run records them.

The data: small 32x32x3 uint8 "images", learnable at a glance (cats bright in the top half, non-cats in the bottom
half). With seed 1 every output weight starts positive, so the non-cat outputs fall only as the hidden units
specialise; at 8x8x3 that takes plain gradient descent at 0.0075 far beyond 5000 epochs (the cost creeps down as
1/t), at 32x32x3 (larger activations) 68 epochs.
"""

import json

import h5py
import numpy as np
import pytest

from lnn_cli.main import main
from lnn_core.ml import training

LNN_1_0_PARAMETERS = (
    '{"epochs": 5000, "layers": 4, "activations": {"layer1": "relu", "layer2": "relu", "layer3": "relu", '
    '"layer4": "sigmoid"}, "neurons": {"layer1": 20, "layer2": 7, "layer3": 5, "layer4": 1}, "learning_rate": 0.0075, '
    '"batch_size": 64, "threshold": 0.0019}'
)
SHAPE = (32, 32, 3)  # stops at epoch 68 with lnn local's default seed and init


def images(m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """m uint8 images of SHAPE and their int64 labels: dark noise, plus a bright top half (cat) or bottom half."""
    y = rng.integers(0, 2, size=m)
    X = rng.integers(0, 30, size=(m, *SHAPE))
    X[y == 1, : SHAPE[0] // 2] += 225
    X[y == 0, SHAPE[0] // 2 :] += 225
    return X.astype(np.uint8), y.astype(np.int64)


def write_lnn_h5(path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """LNN's datasets.h5 layout; returns the training images and labels."""
    X, y = images(256, rng)
    X_test, y_test = images(50, rng)
    with h5py.File(path, "w") as h5:
        h5["train_set_x"], h5["train_set_y"] = X, y
        h5["test_set_x"], h5["test_set_y"] = X_test, y_test
        h5["list_classes"] = np.array([b"non-cat", b"cat"], dtype="S7")
    return X, y


@pytest.mark.slow  # 28-50 s here, nearly all of it lnn local's cdk bootstrap, synth and deploy
def test_lnn_1_0_parameters_and_hdf5_train_end_to_end(tmp_path):
    config = tmp_path / "parameters.json"
    config.write_text(LNN_1_0_PARAMETERS)
    X, y = write_lnn_h5(tmp_path / "datasets.h5", np.random.default_rng(0))
    with h5py.File(tmp_path / "datasets.h5") as h5:
        assert h5["train_set_x"].dtype == np.uint8 and h5["train_set_x"].shape == (256, *SHAPE)
        assert h5["train_set_y"].dtype == np.int64 and h5["list_classes"].dtype == np.dtype("S7")
    out = tmp_path / "out"
    assert (
        main(
            [
                "local",
                "--config",
                str(config),
                "--data",
                str(tmp_path / "datasets.h5"),
                "--granularity",
                "auto",
                "--init",
                "he",
                "--seed",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )  # what lnn local's own defaults once added

    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "succeeded" and results["granularity"] == "auto"
    assert results["seed"] is not None and results["config"]["batch_size"] == 64
    costs = results["costs"]
    first_below = next(epoch for epoch, cost in enumerate(costs, start=1) if cost < 0.0019)
    assert results["stopped_early_at"] == first_below == len(costs) == results["epochs"] < 5000
    assert all(cost >= 0.0019 for cost in costs[:-1])

    parameters = json.loads(LNN_1_0_PARAMETERS)
    _, expected = training.train_reference(
        X.reshape(len(X), -1).astype(np.float64) / 255.0,
        y.astype(np.float64),
        neurons=[parameters["neurons"][f"layer{l}"] for l in range(1, 5)],
        activations=[parameters["activations"][f"layer{l}"] for l in range(1, 5)],
        learning_rate=parameters["learning_rate"],
        epochs=parameters["epochs"],
        seed=results["seed"],
        init=results["config"]["init"],
        batch_size=parameters["batch_size"],
        threshold=parameters["threshold"],
    )
    assert costs == expected

    with np.load(out / "model.npz") as model:
        assert [str(name) for name in model["classes"]] == ["non-cat", "cat"]
        assert tuple(model["example_shape"]) == SHAPE
        assert model["W1"].shape == (20, 32 * 32 * 3) and model["W4"].shape == (1, 5)
