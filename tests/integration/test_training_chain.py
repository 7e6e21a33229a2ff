"""The whole self-invoking chain under in-process moto, with the invoker replaced by a local queue."""

import io
import json

import numpy as np
import pytest

from lnn_core.handlers import build_launcher, build_trainer
from lnn_core.ml import training
from tests.conftest import QueueInvoker, blobs


def run_chain(aws, parameters, run_id="r1", granularity="layer"):
    X, y = blobs()
    aws.upload_data(f"runs/{run_id}/data.npz", X=X[:48], y=y[:48], X_test=X[48:], y_test=y[48:])
    queue = QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    trainer = build_trainer(session=aws.session, invoker=queue)
    answer = launcher.handle({"run_id": run_id, "parameters": {**parameters, "granularity": granularity}})
    assert answer == {"run_id": run_id, "status": "running"}
    outcomes = []
    while queue.events:
        outcomes.append(trainer.handle(queue.events.popleft()))
    return trainer, outcomes


PARAMETERS = {"epochs": 5, "learning_rate": 0.5, "neurons": [3, 1], "activations": ["tanh", "sigmoid"], "seed": 3}


def test_layer_chain_trains_and_finishes_once(aws):
    trainer, outcomes = run_chain(aws, PARAMETERS)
    table = trainer.ports.table
    run = table.get_run("r1")
    assert run["status"] == "succeeded"
    assert [o["outcome"] for o in outcomes] == ["committed"] * (5 * 5 + 1)
    epochs = table.list_epochs("r1")
    assert [item["epoch"] for item in epochs] == [1, 2, 3, 4, 5]
    costs = [item["cost"] for item in epochs]
    assert costs[-1] < costs[0]
    messages = aws.messages()
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert body["status"] == "succeeded" and body["final"]["epochs"] == 5
    assert messages[0]["MessageAttributes"]["status"]["StringValue"] == "succeeded"
    model = aws.s3.get_object(Bucket=aws.bucket, Key="runs/r1/model.npz")
    assert model["ContentLength"] > 0
    assert run["final"]["invocations"] == 26 and run["final"]["test_accuracy"] is not None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("granularity", ["layer", "epoch", "auto"])
def test_chain_equals_plain_numpy_bit_for_bit(aws, granularity, dtype):
    trainer, _ = run_chain(aws, {**PARAMETERS, "dtype": dtype}, granularity=granularity)
    X, y = blobs()
    params, costs = training.train_reference(
        X[:48],
        y[:48],
        neurons=[3, 1],
        activations=["tanh", "sigmoid"],
        learning_rate=0.5,
        epochs=5,
        seed=3,
        dtype=dtype,
    )

    model = np.load(io.BytesIO(aws.s3.get_object(Bucket=aws.bucket, Key="runs/r1/model.npz")["Body"].read()))
    for name, array in params.items():
        assert model[name].dtype == array.dtype == dtype and model[name].tobytes() == array.tobytes(), name
    assert [item["cost"] for item in trainer.ports.table.list_epochs("r1")] == costs


def test_one_json_log_line_and_emf_metrics_per_step(aws, capsys):
    from aws_lambda_powertools import Logger

    stream = io.StringIO()
    X, y = blobs()
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    queue = QueueInvoker()
    build_launcher(session=aws.session, invoker=queue).handle(
        {"run_id": "r1", "parameters": {**PARAMETERS, "epochs": 2}}
    )
    trainer = build_trainer(
        session=aws.session, invoker=queue, logger=Logger(service="lnn-log-test", stream=stream)
    )  # a new name: Powertools shares handlers per service
    capsys.readouterr()
    steps = 0
    while queue.events:
        trainer.handle(queue.events.popleft())
        steps += 1
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == steps == 2 * 5 + 1
    for line in lines:
        assert line["message"] == "step" and line["run_id"] == "r1" and line["outcome"] == "committed"
        assert {"epoch", "layer", "state", "step", "duration_ms", "io"} <= line.keys()
    assert [line["cost"] for line in lines if "cost" in line] == [
        i["cost"] for i in trainer.ports.table.list_epochs("r1")
    ]
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert sum(len(m["Steps"]) if isinstance(m["Steps"], list) else 1 for m in metrics) == steps
    assert [c for m in metrics if "Cost" in m for c in (m["Cost"] if isinstance(m["Cost"], list) else [m["Cost"]])] == [
        i["cost"] for i in trainer.ports.table.list_epochs("r1")
    ]
