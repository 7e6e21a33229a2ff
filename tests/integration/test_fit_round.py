"""The finish of K > 1 workers (issue 19): K fit deliveries, each the final model's outputs over its own part of the
training set (of one file, its shard's columns), written and joined to the finish's barrier; the write that
completes it claims the commit, gathers the K outputs and commits. No function passes over every part, and the
run's figures are those of one pass over all its examples."""

import json

import pytest

from lnn_core.handlers import build_trainer
from lnn_core.ml import diagnostics, metrics, network
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol import sending
from lnn_core.protocol.layout import fit_keys
from tests.conftest import FakeClock, QueueInvoker, blobs
from tests.integration import test_parts as parts
from tests.integration.test_workers import PARAMETERS, Died, dying_at, launch

K = PARAMETERS["workers"]
RELU = {"neurons": [6, 1], "activations": ["relu", "sigmoid"]}  # a hidden layer whose dead units the finish counts


def to_the_fits(trainer, queue):
    """Deliver every event up to the finish's K fit events, and return those (taken off the queue)."""
    while queue.events and queue.events[0]["state"] != "fit":
        trainer.handle(queue.events.popleft())
    fits = sorted(queue.events, key=lambda event: event.get("shard", -1))  # (the committing shard's own goes first)
    queue.events.clear()
    assert [(event["state"], event["shard"]) for event in fits] == [("fit", shard) for shard in range(K)]
    return fits


def reading(trainer):
    """The keys a trainer container GETs from S3, recorded as it reads them."""
    keys, get_bytes = [], trainer.ports.store.get_bytes
    trainer.ports.store.get_bytes = lambda key, **options: keys.append(key) or get_bytes(key, **options)
    return keys


def whole_fit(params, X, y, parameters):
    """One pass of the final model over every training example, as a run of one worker measures it."""
    config = TrainingConfig.from_parameters({**parameters, "data": "runs/r1/data.npz"})
    X_cols = network.to_columns(X, config.dtype)
    Y = network.targets(y, config.activations[-1], config.neurons[-1], config.dtype)
    return diagnostics.training_fit(params, X_cols, config.activations), Y, config


@pytest.mark.parametrize("data", ["parts", "one file"])
def test_the_finish_of_k_workers_is_k_fit_deliveries_each_reading_its_own_part(aws, data):
    X, y = blobs(40)
    queue, clock = QueueInvoker(), FakeClock()
    parameters = {**parts.PARAMETERS, **RELU}
    if data == "parts":
        parts.upload_parts(aws, "r1", K, X=X, y=y)
    else:
        aws.upload_data("runs/r1/data.npz", X=X, y=y)
        parameters["data"] = "runs/r1/data.npz"
    answer, _ = parts.launch(aws, queue, clock, parameters)
    assert answer["status"] == "running", answer
    fits = to_the_fits(build_trainer(session=aws.session, invoker=queue, clock=clock), queue)
    outcomes = []
    for event in fits:  # each in a container of its own, which holds nothing yet (as in Lambda)
        container = build_trainer(session=aws.session, invoker=queue, clock=clock)
        read = reading(container)
        outcomes.append(container.handle(event)["outcome"])
        if data == "parts":  # its own part, and no other
            assert [key for key in read if "/part-" in key] == [f"runs/r1/data/part-{event['shard']}-of-{K}.npz"]
    assert outcomes == ["fit"] * (K - 1) + ["committed"]
    assert not queue.events  # nothing follows the finish
    run = container.ports.table.get_run("r1")
    assert run["status"] == "succeeded" and run["next_event"] is None
    params = {name: array for name, array in parts.model(aws).items() if name[0] in "Wb" and name[1:].isdigit()}
    fit, Y, config = whole_fit(params, X, y, parameters)
    final = run["final"]
    assert final["train_accuracy"] == metrics.accuracy(params, X, y, parameters["activations"])
    assert final["warnings"] == diagnostics.model_warnings(fit, Y, config)
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="runs/r1/state/").get("Contents", [])
    assert not set(fit_keys(config, parameters["epochs"])) & {item["Key"] for item in listed}  # obsolete, deleted


def test_a_fit_whose_finish_committed_while_it_computed_writes_nothing(world_k):
    aws, queue, clock, trainer = world_k
    fits = to_the_fits(trainer, queue)
    slow = build_trainer(session=aws.session, invoker=QueueInvoker(), clock=clock)
    execute = slow._execute

    def finish_commits_meanwhile(position, *args):
        result = execute(position, *args)
        if position.state == "fit":
            assert [trainer.handle(event)["outcome"] for event in fits].count("committed") == 1
        return result

    slow._execute = finish_commits_meanwhile
    assert slow.handle(json.loads(json.dumps(fits[0])))["outcome"] == "duplicate"
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="runs/r1/state/").get("Contents", [])
    assert not [item["Key"] for item in listed if "/fit-" in item["Key"]]  # no fit output written back as an orphan
    assert [json.loads(message["Body"])["status"] for message in aws.messages()] == ["succeeded"]


@pytest.fixture
def world_k(aws):
    X, y = blobs(40)
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    queue, clock = QueueInvoker(), FakeClock()
    return aws, queue, clock, launch(aws, queue, clock)


def test_what_a_finish_of_k_workers_still_misses_is_its_missing_fits_then_one_fit(world_k):
    aws, queue, clock, trainer = world_k
    fits = to_the_fits(trainer, queue)
    run = trainer.ports.table.get_run("r1")
    assert sending.pending(trainer.ports, run) == fits
    trainer.handle(fits[1])
    assert sending.pending(trainer.ports, run) == [fits[0], fits[2]]
    trainer.handle(fits[0])
    dying_at(trainer.ports.table, "join_fit")  # the completing fit dies just after its place is in
    with pytest.raises(Died):
        trainer.handle(fits[2])
    assert trainer.ports.table.get_run("r1")["status"] == "running"
    assert sending.pending(trainer.ports, run) == fits[:1]  # every fit in: one, whose delivery claims the commit
    retry = build_trainer(session=aws.session, invoker=queue, clock=clock)
    assert retry.handle(fits[0])["outcome"] == "committed"
    assert [json.loads(message["Body"])["status"] for message in aws.messages()] == ["succeeded"]


@pytest.mark.parametrize("site", ["claim_commit", "put_bytes", "transition"])
def test_a_fit_that_died_while_finishing_is_finished_by_its_retry_after_the_lease(world_k, site):
    """The completing fit dies after its claim on the commit, its model staged, or its commit: Lambda's retry of
    its event (a minute later: the claim expired) finishes the run once, with one message."""
    aws, queue, clock, trainer = world_k
    fits = to_the_fits(trainer, queue)
    for event in fits[:-1]:
        assert trainer.handle(event)["outcome"] == "fit"
    dying = build_trainer(session=aws.session, invoker=queue, clock=clock)
    port = dying.ports.store if site == "put_bytes" else dying.ports.table
    dying_at(port, site, armed=lambda: site != "put_bytes" or "staged-model" in str(calls))
    calls = []
    if site == "put_bytes":
        put = port.put_bytes
        port.put_bytes = lambda key, *args, **options: calls.append(key) or put(key, *args, **options)
    with pytest.raises(Died):
        dying.handle(fits[-1])
    clock.advance(60)
    retry = build_trainer(session=aws.session, invoker=queue, clock=clock)
    outcome = retry.handle(fits[-1])["outcome"]
    assert outcome == ("ignored" if site == "transition" else "committed")  # a run ended: its message sent
    run = retry.ports.table.get_run("r1")
    assert run["status"] == "succeeded" and run["committed_step"] == 2 * 3 + 2
    assert not queue.events
    assert [json.loads(message["Body"])["status"] for message in aws.messages()] == ["succeeded"]


def test_a_finish_event_of_k_workers_is_refused(world_k):
    aws, queue, clock, trainer = world_k
    fits = to_the_fits(trainer, queue)
    finish = {key: value for key, value in fits[0].items() if key != "shard"} | {"state": "finish"}
    answer = trainer.handle(finish)
    assert answer["outcome"] == "failed"
    assert "the finish of K > 1 workers takes fit events" in answer["reason"]
    assert [trainer.handle(event)["outcome"] for event in fits] == ["ignored"] * K
