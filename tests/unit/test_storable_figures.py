"""Figures that DynamoDB cannot hold never reach the run's writes: a run whose weights are finite but large, or whose
regression targets hardly vary, ends with its results instead of a write refused at every try."""

import numpy as np

from lnn_core.aws.codec import to_dynamo
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol.results import epoch_item, storable


def test_float32_weight_norms_are_taken_in_float64_and_stay_storable():
    config = TrainingConfig.from_parameters(
        {
            "epochs": 1,
            "learning_rate": 0.1,
            "neurons": [300, 1],
            "activations": ["tanh", "sigmoid"],
            "dtype": "float32",
            "data": "runs/r/data.npz",
        }
    )
    params = {  # 1e20 is far below finite_params' float32 limit; its float32 norm overflows to inf
        "W1": np.full((300, 784), 1e20, dtype=np.float32),
        "b1": np.zeros((300, 1), dtype=np.float32),
        "W2": np.ones((1, 300), dtype=np.float32),
        "b2": np.zeros((1, 1), dtype=np.float32),
    }
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.linalg.norm(params["W1"]))
    item = epoch_item(config, 1, 0.5, params, "2026-12-06T00:00:00Z")
    assert item["weight_norms"]["layer1"] == float(np.linalg.norm(params["W1"].astype(np.float64)))
    to_dynamo(item)  # refused before: DynamoDB cannot store inf


def test_a_figure_dynamodb_cannot_hold_is_no_figure():
    assert [storable(x) for x in (0.25, -3.5e120, None)] == [0.25, -3.5e120, None]
    assert [storable(x) for x in (-1e140, float("inf"), float("nan"), 1e125)] == [None, None, None, None]
