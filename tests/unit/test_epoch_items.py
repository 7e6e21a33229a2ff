"""Per-epoch results items: weights as lists when they fit comfortably in an item, else norms and a checkpoint key;
stored as two items, the figures at the epoch and the weights in a range of keys of their own."""

import numpy as np
from boto3.dynamodb.types import TypeSerializer

from lnn_core.aws.codec import to_dynamo
from lnn_core.aws.epoch_items import EPOCH_FIGURES, epoch_write_units, stored_items
from lnn_core.ml import network
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol.layout import params_key
from lnn_core.protocol.results import ITEM_WEIGHTS_LIMIT, epoch_item, epochs_done


def config(neurons, epochs=300):
    return TrainingConfig.from_parameters(
        {
            "epochs": epochs,
            "learning_rate": 0.1,
            "neurons": neurons,
            "activations": ["relu"] * (len(neurons) - 1) + ["sigmoid"],
            "data": "runs/r/data.npz",
        }
    )


def item_bytes(item):
    return len(str(TypeSerializer().serialize(to_dynamo(item))))


def test_small_networks_store_their_weights_as_lists():
    cfg = config([20, 7, 5, 1])
    params = network.init_params([30, 20, 7, 5, 1], seed=0)
    item = epoch_item(cfg, 3, 0.5, params, "t")
    assert np.array_equal(item["weights"]["layer2"], params["W2"]) and "checkpoint_key" not in item
    assert item_bytes(item) < 100_000


def test_large_networks_store_norms_and_checkpoint_keys_of_kept_parameters():
    cfg = config([20, 7, 5, 1])
    params = network.init_params([12288, 20, 7, 5, 1], seed=0)
    assert sum(a.size for a in params.values()) > ITEM_WEIGHTS_LIMIT
    items = [epoch_item(cfg, epoch, 0.5, params, "t") for epoch in (199, 200)]
    assert "weights" not in items[0] and items[0]["weight_norms"]["layer1"] == float(np.linalg.norm(params["W1"]))
    result = epochs_done(cfg, first_epoch=199, state=params, items=items, obsolete=[])
    # only the step's last epoch is written, and kept as a checkpoint every 100th epoch
    assert result.outputs.keys() == {params_key(cfg, 200)} == result.checkpoints
    assert items[1]["checkpoint_key"] == "runs/r/state/params-e0000200.npz" and "checkpoint_key" not in items[0]
    assert result.obsolete == [params_key(cfg, 198)]
    later = epochs_done(cfg, first_epoch=201, state=params, items=[epoch_item(cfg, 201, 0.5, params, "t")], obsolete=[])
    assert not later.checkpoints and "checkpoint_key" not in later.epoch_items[0]
    assert later.obsolete == []  # epoch 200's parameters are a kept checkpoint
    assert item_bytes(items[1]) < 2_000


def test_the_largest_list_item_fits_comfortably():
    cfg = config([40, 8, 1])
    params = {name: np.full(a.shape, -1 / 3) for name, a in network.init_params([40, 40, 8, 1], seed=0).items()}
    assert sum(a.size for a in params.values()) <= ITEM_WEIGHTS_LIMIT
    assert item_bytes(epoch_item(cfg, 1, 0.5, params, "t")) < 100_000  # DynamoDB's limit is 400 KB


def test_an_epoch_is_stored_as_its_figures_and_its_weights_apart():
    cfg = config([20, 7, 5, 1])
    params = network.init_params([30, 20, 7, 5, 1], seed=0)
    item = epoch_item(cfg, 7, 0.5, params, "t", {"test_cost": 0.6, "test_accuracy": 0.75})
    figures, weights = stored_items(item)
    assert figures == {name: item[name] for name in item if name in EPOCH_FIGURES}  # every figure, no weights
    assert weights["epoch"] == 7  # at its epoch, in the run's weights partition (`put_epoch_items` adds the keys)
    assert weights["weights"] is item["weights"] and weights["bias"] is item["bias"]
    assert item_bytes(figures) < 400 and item_bytes(weights) > 15_000  # a figures query reads small items only
    assert epoch_write_units(item) == [1, 10]  # 813 numbers of at most 11 bytes
    assert stored_items(item) == stored_items(dict(item))  # of the item alone: every attempt writes the same two


def test_a_large_network_stores_its_norms_and_checkpoint_key_apart():
    cfg = config([20, 7, 5, 1])
    params = network.init_params([12288, 20, 7, 5, 1], seed=0)
    figures, weights = stored_items(epoch_item(cfg, 200, 0.5, params, "t"))
    assert set(figures) == {"epoch", "cost", "learning_rate", "started_at", "finished_at"}
    assert set(weights) == {"epoch", "weight_norms", "checkpoint_key"}
