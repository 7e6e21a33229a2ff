"""Bad input to a running chain: the run fails once, with its reason, and nothing else moves."""

import copy
import json
import re

import numpy as np
import pytest

from lnn_core.aws.usage import USAGE_PREFIX
from lnn_core.handlers import build_launcher, build_trainer
from tests.conftest import QueueInvoker, blobs
from tests.support.uploads import upload_event, upload_run

PARAMETERS = {"epochs": 3, "learning_rate": 0.5, "neurons": [3, 1], "activations": ["tanh", "sigmoid"], "seed": 1}


@pytest.fixture
def two_runs(aws):
    """Runs r1 and r2 launched, their first events queued; r2 is the bystander that must stay untouched."""
    X, y = blobs()
    queue = QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    for run_id in ("r1", "r2"):
        aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
        assert launcher.handle({"run_id": run_id, "parameters": PARAMETERS})["status"] == "running"
    trainer = build_trainer(session=aws.session, invoker=queue)
    return aws, trainer, queue


def step(trainer, queue, run_id="r1"):
    """Deliver the next queued event of `run_id`."""
    event = next(e for e in queue.events if e["run_id"] == run_id)
    queue.events.remove(event)
    return trainer.handle(event), event


def assert_failed_once(aws, trainer, queue, reason_part, bystander_before):
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "failed" and reason_part in run["reason"]
    messages = aws.messages()
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"])["status"] == "failed"
    assert messages[0]["MessageAttributes"]["status"]["StringValue"] == "failed"
    assert not [e for e in queue.events if e["run_id"] == "r1"]
    assert trainer.ports.table.get_run("r2") == bystander_before
    # a later delivery for the failed run changes nothing and sends nothing
    before = trainer.ports.table.get_run("r1")
    assert trainer.handle(run["next_event"] or {"state": "start", "run_id": "r1"})["outcome"] in ("ignored", "rejected")
    after = trainer.ports.table.get_run("r1")  # only its usage grew: the delivery is paid for
    assert without_usage(after) == without_usage(before) and not aws.messages()
    assert after["usage_deliveries"] == before["usage_deliveries"] + 1


def without_usage(run):
    return {key: value for key, value in run.items() if not key.startswith(USAGE_PREFIX)}


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (lambda e: e.pop("state"), "lacks 'state'"),
        (lambda e: e.update(state="sideways"), "unknown state"),
        (lambda e: e.update(step="2"), "'step' must be of type int"),
        (lambda e: e.update(layer=7), "layer 7 is out of range"),
        (lambda e: e.update(epoch=9), "epoch 9 is out of range"),
        (lambda e: e.update(epoch=2), "epoch is 2 but the run's next step has 1"),
        (lambda e: e.update(learning_rate=0.9), "learning_rate is 0.9"),
        (lambda e: e.update(learning_rate=10**400), "'learning_rate' must be a finite number"),
        (lambda e: e.update(layers=3 * 10**7), "and 64 layers"),
        (lambda e: e.update(state="x" * 10_000), "unknown state 'xxx"),
    ],
)
def test_bad_event_fails_its_run_once(two_runs, corrupt, reason):
    aws, trainer, queue = two_runs
    bystander = trainer.ports.table.get_run("r2")
    step(trainer, queue)  # start committed; the next event is forward layer 1
    event = next(e for e in queue.events if e["run_id"] == "r1")
    queue.events.remove(event)
    bad = copy.deepcopy(event)
    corrupt(bad)
    outcome = trainer.handle(bad)
    assert outcome["outcome"] == "failed"
    assert_failed_once(aws, trainer, queue, reason, bystander)


def test_unknown_run_touches_nothing(two_runs):
    aws, trainer, queue = two_runs
    before = {run_id: trainer.ports.table.get_run(run_id) for run_id in ("r1", "r2")}
    event = dict(queue.events[0], run_id="ghost")
    assert trainer.handle(event)["outcome"] == "rejected"
    assert {run_id: trainer.ports.table.get_run(run_id) for run_id in ("r1", "r2")} == before
    assert not aws.messages() and len(queue.events) == 2


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_damaged_state_object_fails_the_run(two_runs, damage):
    aws, trainer, queue = two_runs
    bystander = trainer.ports.table.get_run("r2")
    step(trainer, queue)  # start wrote the initial parameters
    key = "runs/r1/state/params-e0000000.npz"
    if damage == "corrupt":
        aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=b"not an npz")
    else:
        aws.s3.delete_object(Bucket=aws.bucket, Key=key)
    fresh = build_trainer(session=aws.session, invoker=queue)  # a cold container: nothing cached
    outcome, _ = step(fresh, queue)
    assert outcome["outcome"] == "failed"
    assert_failed_once(aws, fresh, queue, key, bystander)


def test_data_changed_during_the_run_fails_it(two_runs):
    aws, trainer, queue = two_runs
    bystander = trainer.ports.table.get_run("r2")
    step(trainer, queue)  # start; forward layer 1 reads the data next
    X, y = blobs()
    X[0, 0] = np.nan
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    outcome, _ = step(build_trainer(session=aws.session, invoker=queue), queue)
    assert outcome["outcome"] == "failed"
    assert_failed_once(aws, trainer, queue, "changed during the run", bystander)


def test_diverging_cost_fails_the_run(aws):
    X, y = blobs()
    aws.upload_data("runs/r1/data.npz", X=X * 1e4, y=y)
    aws.upload_data("runs/r2/data.npz", X=X, y=y)
    queue = QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    diverging = {**PARAMETERS, "epochs": 50, "learning_rate": 10, "activations": ["linear", "sigmoid"]}
    assert launcher.handle({"run_id": "r1", "parameters": diverging})["status"] == "running"
    assert launcher.handle({"run_id": "r2", "parameters": PARAMETERS})["status"] == "running"
    trainer = build_trainer(session=aws.session, invoker=queue)
    bystander = trainer.ports.table.get_run("r2")
    while any(e["run_id"] == "r1" for e in queue.events):
        step(trainer, queue)
    assert_failed_once(aws, trainer, queue, "diverged", bystander)


@pytest.mark.parametrize(
    "arrays, reason",
    [
        ({"X": np.full((4, 2), np.nan), "y": np.zeros(4)}, "NaN or Inf"),
        ({"X": np.zeros((4, 2)), "y": np.zeros(3)}, "4 examples but y has 3 labels"),
        ({"X": np.zeros((4, 2))}, "lacks the array 'y'"),
        ({"X": np.zeros((4, 2)), "y": np.array([0, 1, 2, 1.0])}, "class labels 0..1"),
    ],
)
def test_launch_rejects_bad_data_before_creating_anything(aws, arrays, reason):
    aws.upload_data("runs/bad/data.npz", **arrays)
    queue = QueueInvoker()
    answer = build_launcher(session=aws.session, invoker=queue).handle({"run_id": "bad", "parameters": PARAMETERS})
    assert answer["status"] == "rejected" and reason in answer["reason"]
    assert build_trainer(session=aws.session, invoker=queue).ports.table.get_run("bad") is None
    assert not queue.events


def test_upload_launch_rejection_sends_one_message(aws):
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/up/parameters.json", Body=b"{not json")
    queue = QueueInvoker()
    event = upload_event("runs/up/parameters.json")
    answer = build_launcher(session=aws.session, invoker=queue).handle(event)
    assert answer["status"] == "rejected" and "not valid JSON" in answer["reason"]
    messages = aws.messages()
    assert len(messages) == 1 and messages[0]["MessageAttributes"]["status"]["StringValue"] == "rejected"
    assert not queue.events


def test_upload_launch_is_idempotent(aws):
    event = upload_event(upload_run(aws, "up", PARAMETERS))
    queue = QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    assert launcher.handle(event) == {"run_id": "up", "status": "running"}
    assert launcher.handle(event)["duplicate"] is True
    assert len(queue.events) == 1


def test_a_bad_event_is_one_clear_error_line_in_the_log(two_runs):
    import io

    from aws_lambda_powertools import Logger

    aws, _, queue = two_runs
    stream = io.StringIO()
    trainer = build_trainer(
        session=aws.session, invoker=queue, logger=Logger(service="lnn-bad-event-log", stream=stream)
    )
    trainer.handle({"run_id": "r1", "state": "sideways"})
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["level"] == "ERROR" and line["outcome"] == "failed" and "unknown state 'sideways'" in line["reason"]


@pytest.mark.parametrize("key", ["runs/bad/model.npz", "runs/bad/state/params-e0000001.npz"])
def test_data_may_not_live_where_lnn_writes(aws, key):
    X, y = blobs()
    aws.upload_data(key, X=X, y=y)
    queue = QueueInvoker()
    answer = build_launcher(session=aws.session, invoker=queue).handle(
        {"run_id": "bad", "parameters": {**PARAMETERS, "data": key}}
    )
    assert answer["status"] == "rejected" and "LNN writes there" in answer["reason"] and not queue.events


def test_a_regression_whose_cost_outgrows_what_dynamodb_stores_fails_with_the_reason(aws):
    """Unscaled inputs and a learning rate a little too high: the weights grow about a thousandfold an epoch, their
    squared errors faster, and the cost passes 1e100 at epoch 16 (DynamoDB's numbers end at 1e126) while the
    weights are near 1e50.
    The run fails at that epoch with its reason, in the chain and in a round alike, instead of every delivery
    raising until the watchdog gives up."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)) * 1e4
    queue = QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    trainer = build_trainer(session=aws.session, invoker=queue)
    reasons = {}
    for run_id, workers in (("chain", 1), ("round", 2)):
        aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=X[:, 0] * 2.0)
        parameters = {
            **PARAMETERS,
            "epochs": 100,
            "learning_rate": 1e-5,
            "neurons": [1],
            "activations": ["linear"],
            "workers": workers,
            "granularity": "epoch",
        }
        assert launcher.handle({"run_id": run_id, "parameters": parameters})["status"] == "running"
        while any(e["run_id"] == run_id for e in queue.events):
            try:
                step(trainer, queue, run_id)
            except Exception as error:
                raise AssertionError(f"run {run_id}: a delivery raised: {error!r}") from error
        run = trainer.ports.table.get_run(run_id)
        assert run["status"] == "failed", run
        assert re.fullmatch(
            r"the cost diverged at epoch 16 \(1\.58e\+101, beyond 1e\+100\); lower the learning rate \(1e-05\), "
            r"or scale the inputs and the targets",
            run["reason"],
        ), run["reason"]
        reasons[run_id] = run["reason"]  # the cost to 3 digits: K = 2 adds in another order than K = 1
    assert reasons["chain"] == reasons["round"]
