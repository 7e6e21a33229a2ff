"""Mini-batches, optimizers, L2, early stopping, evaluation and regression through the whole chain (issue 11).

Every granularity gives bit for bit the model, the costs and the optimizer state of `training.train_reference_state`,
the plain NumPy loop.
"""

import io
import json

import numpy as np
import pytest

from lnn_core.handlers import build_launcher, build_trainer
from lnn_core.ml import metrics, network, training
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol.layout import params_key
from tests.conftest import QueueInvoker, blobs

EXAMPLES = 50  # batches of 16: 16, 16, 16 and a last one of 2
BASE = {
    "epochs": 4,
    "learning_rate": 0.1,
    "neurons": [4, 3, 1],
    "activations": ["relu", "tanh", "sigmoid"],
    "seed": 7,
    "batch_size": 16,
}
OPTIMIZERS = {
    "gd": {"optimizer": "gd"},
    "momentum": {"optimizer": "momentum", "beta": 0.8},
    "adam": {"optimizer": "adam", "learning_rate": 0.01, "l2": 0.05},
}


def upload(aws, run_id, X, y, X_test=None, y_test=None):
    arrays = {"X": X, "y": y} | ({"X_test": X_test, "y_test": y_test} if X_test is not None else {})
    aws.upload_data(f"runs/{run_id}/data.npz", **arrays)


def train(aws, parameters, run_id="r1"):
    """Launch and drain the chain; returns the trainer and the step outcomes."""
    queue = QueueInvoker()
    answer = build_launcher(session=aws.session, invoker=queue).handle({"run_id": run_id, "parameters": parameters})
    assert answer["status"] == "running", answer
    trainer = build_trainer(session=aws.session, invoker=queue)
    outcomes = []
    while queue.events:
        outcomes.append(trainer.handle(queue.events.popleft())["outcome"])
    return trainer, outcomes


def stored(aws, key):
    with np.load(io.BytesIO(aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read())) as npz:
        return {name: npz[name] for name in npz.files}


def reference(X, y, parameters):
    options = {
        key: parameters[key]
        for key in (
            "optimizer",
            "beta",
            "beta1",
            "beta2",
            "epsilon",
            "l2",
            "threshold",
            "batch_size",
            "shuffle_seed",
            "dtype",
        )
        if key in parameters
    }
    return training.train_reference_state(
        X,
        y,
        neurons=parameters["neurons"],
        activations=parameters["activations"],
        learning_rate=parameters["learning_rate"],
        epochs=parameters["epochs"],
        seed=parameters["seed"],
        **options,
    )


def same(got: dict, expected: dict) -> bool:
    return got.keys() >= expected.keys() and all(
        got[k].dtype == np.asarray(expected[k]).dtype and got[k].tobytes() == np.asarray(expected[k]).tobytes()
        for k in expected
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("granularity", ["layer", "epoch", "auto"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_every_granularity_equals_the_plain_loop_bit_for_bit(aws, optimizer, granularity, dtype):
    X, y = blobs(EXAMPLES)
    upload(aws, "r1", X, y)
    # 2 epochs: the optimizer's state crosses an epoch's end, in 51 trainer steps at layer granularity (4 epochs: 101)
    parameters = {**BASE, **OPTIMIZERS[optimizer], "epochs": 2, "granularity": granularity, "dtype": dtype}
    trainer, outcomes = train(aws, parameters)
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded", run.get("reason")
    params, costs, opt_state = reference(X, y, parameters)
    assert same(stored(aws, "runs/r1/model.npz"), params)
    assert [item["cost"] for item in trainer.ports.table.committed_epochs(run)] == costs
    state = stored(aws, params_key(TrainingConfig.from_parameters({**parameters, "data": "runs/r1/data.npz"}), 2))
    assert same(state, opt_state) and int(state["t"]) == 2 * 4  # 2 epochs of 4 updates
    if granularity == "layer":
        assert len(outcomes) == run["step_bound"] == 2 * (4 * 2 * 3 + 1) + 1


def test_threshold_ends_the_run_after_the_first_epoch_below_it(aws):
    X, y = blobs(EXAMPLES)
    upload(aws, "r1", X, y)
    parameters = {**BASE, "epochs": 50, "learning_rate": 0.5, "granularity": "layer"}
    _, costs, _ = reference(X, y, parameters)
    threshold = (costs[2] + costs[3]) / 2  # epoch 4 is the first below it
    assert costs[2] > threshold > costs[3] and all(cost > threshold for cost in costs[:3])
    trainer, _ = train(aws, {**parameters, "threshold": threshold})
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded" and run["progress_epoch"] == 4 and run["final"]["stopped_early_at"] == 4
    assert [item["cost"] for item in trainer.ports.table.committed_epochs(run)] == costs[:4]
    params, _, _ = reference(X, y, {**parameters, "threshold": threshold})
    assert same(stored(aws, "runs/r1/model.npz"), params)
    body = json.loads(aws.messages()[0]["Body"])
    assert body["final"]["stopped_early_at"] == 4 and body["final"]["epochs"] == 4


# layer granularity in make slow (6-10 s)
@pytest.mark.parametrize("granularity", [pytest.param("layer", marks=pytest.mark.slow), "auto"])
def test_eval_every_records_the_test_set_in_the_epoch_items(aws, granularity):
    X, y = blobs(EXAMPLES + 20)
    upload(aws, "r1", X[:EXAMPLES], y[:EXAMPLES], X[EXAMPLES:], y[EXAMPLES:])
    trainer, _ = train(aws, {**BASE, "eval_every": 2, "granularity": granularity})
    items = trainer.ports.table.list_epochs("r1")
    assert ["test_cost" in item for item in items] == [False, True, False, True]
    params, _, _ = reference(X[:EXAMPLES], y[:EXAMPLES], {**BASE, "epochs": 4})
    assert items[3]["test_accuracy"] == metrics.accuracy(params, X[EXAMPLES:], y[EXAMPLES:], BASE["activations"])


# layer granularity in make slow (6-10 s)
@pytest.mark.parametrize("granularity", [pytest.param("layer", marks=pytest.mark.slow), "epoch"])
def test_a_linear_output_trains_a_regression_and_reports_rmse_and_r2(aws, granularity):
    rng = np.random.RandomState(0)
    X = rng.randn(60, 3)
    y = np.stack([X @ [1.0, -2.0, 0.5], X[:, 0] - X[:, 1]], axis=1)  # two real-valued targets
    upload(aws, "r1", X[:50], y[:50], X[50:], y[50:])
    parameters = {
        "epochs": 6,
        "learning_rate": 0.01,
        "neurons": [8, 2],
        "activations": ["tanh", "linear"],
        "seed": 1,
        "batch_size": 10,
        "optimizer": "adam",
        "granularity": granularity,
    }
    trainer, _ = train(aws, parameters)
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded", run.get("reason")
    params, costs, _ = reference(X[:50], y[:50], parameters)
    assert same(stored(aws, "runs/r1/model.npz"), params)
    assert [item["cost"] for item in trainer.ports.table.committed_epochs(run)] == costs
    final = run["final"]
    assert final["train_rmse"] == metrics.rmse(params, X[:50], y[:50], parameters["activations"])
    assert final["test_r2"] == metrics.r2(params, X[50:], y[50:], parameters["activations"])
    assert "train_accuracy" not in final
    message = aws.messages()[0]
    assert json.loads(message["Body"])["final"]["train_rmse"] == final["train_rmse"]


def test_lnn_0_0_parameters_start_from_their_constant_weight_and_bias(aws):
    """LNN 0.0's file, verbatim: a one-neuron logistic regression from weight 0 and bias 0."""
    X, y = blobs(EXAMPLES)
    upload(aws, "r1", X, y)
    lnn_0_0 = {
        "epochs": 20,
        "layers": 1,
        "activations": {"layer1": "sigmoid"},
        "neurons": {"layer1": 1},
        "weight": 0,
        "bias": 0,
        "learning_rate": 0.005,
    }
    trainer, _ = train(aws, lnn_0_0)
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded"
    costs = [item["cost"] for item in trainer.ports.table.committed_epochs(run)]
    assert costs[0] == pytest.approx(np.log(2))  # sigmoid(0) = 1/2 for every example
    params = {"W1": np.zeros((1, X.shape[1])), "b1": np.zeros((1, 1))}
    for _ in range(20):
        params, _ = training.gradient_descent_epoch(params, network.to_columns(X), y.reshape(1, -1), ["sigmoid"], 0.005)
    assert same(stored(aws, "runs/r1/model.npz"), params)


@pytest.mark.parametrize("granularity", ["layer", "auto"])
def test_a_threshold_first_reached_on_the_last_epoch_is_not_an_early_stop(aws, granularity):
    X, y = blobs(EXAMPLES)
    upload(aws, "r1", X, y)
    parameters = {**BASE, "epochs": 3, "granularity": granularity}
    _, costs, _ = reference(X, y, parameters)
    trainer, _ = train(aws, {**parameters, "threshold": (costs[1] + costs[2]) / 2})
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded" and run["final"]["epochs"] == 3 and run["final"]["stopped_early_at"] is None


def test_a_large_network_stopping_early_keeps_and_names_its_last_state(aws):
    X, y = blobs(EXAMPLES, 40)
    upload(aws, "r1", X, y)
    parameters = {
        "epochs": 30,
        "learning_rate": 0.5,
        "neurons": [60, 1],
        "activations": ["tanh", "sigmoid"],
        "seed": 2,
        "granularity": "epoch",
    }  # 2,521 parameters: the items hold norms
    _, costs, _ = reference(X, y, parameters)
    stop = next(epoch for epoch in range(2, 30) if costs[epoch - 1] < costs[0] / 2)
    trainer, _ = train(aws, {**parameters, "threshold": costs[0] / 2})
    items = trainer.ports.table.committed_epochs(trainer.ports.table.get_run("r1"))
    key = f"runs/r1/state/params-e{stop:07d}.npz"
    assert len(items) == stop and items[-1]["checkpoint_key"] == key
    assert aws.s3.get_object_tagging(Bucket=aws.bucket, Key=key)["TagSet"] == []  # kept, not scratch
