"""Per-epoch results items: weights as lists when they fit comfortably in an item, else norms and a checkpoint key."""

import numpy as np
from boto3.dynamodb.types import TypeSerializer

from lnn_core import network
from lnn_core.codec import to_dynamo
from lnn_core.config import TrainingConfig
from lnn_core.engine import ITEM_WEIGHTS_LIMIT, epoch_item, params_key


def config(neurons, epochs=300):
    return TrainingConfig.from_parameters({"epochs": epochs, "learning_rate": 0.1, "neurons": neurons,
                                           "activations": ["relu"] * (len(neurons) - 1) + ["sigmoid"], "data": "runs/r/data.npz"})


def item_bytes(item):
    return len(str(TypeSerializer().serialize(to_dynamo(item))))


def test_small_networks_store_their_weights_as_lists():
    cfg = config([20, 7, 5, 1])
    params = network.init_params([30, 20, 7, 5, 1], seed=0)
    item = epoch_item(cfg, 3, 0.5, params, "t")
    assert np.array_equal(item["weights"]["layer2"], params["W2"]) and "checkpoint_key" not in item
    assert item_bytes(item) < 100_000


def test_large_networks_store_norms_and_checkpoint_keys():
    cfg = config([20, 7, 5, 1])
    params = network.init_params([12288, 20, 7, 5, 1], seed=0)
    assert sum(a.size for a in params.values()) > ITEM_WEIGHTS_LIMIT
    item = epoch_item(cfg, 200, 0.5, params, "t")
    assert "weights" not in item and item["weight_norms"]["layer1"] == float(np.linalg.norm(params["W1"]))
    assert item["checkpoint_key"] == params_key(cfg, 200) == "runs/r/state/params-e0000200.npz"
    assert "checkpoint_key" not in epoch_item(cfg, 201, 0.5, params, "t")  # only every 100th and the last epoch
    assert item_bytes(item) < 2_000


def test_the_largest_list_item_fits_comfortably():
    cfg = config([40, 8, 1])
    params = {name: np.full(a.shape, -1 / 3) for name, a in network.init_params([40, 40, 8, 1], seed=0).items()}
    assert sum(a.size for a in params.values()) <= ITEM_WEIGHTS_LIMIT
    assert item_bytes(epoch_item(cfg, 1, 0.5, params, "t")) < 100_000  # DynamoDB's limit is 400 KB
