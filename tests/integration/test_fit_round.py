"""The finish of K > 1 workers (issue 19): K fit deliveries, each the final model's outputs over its own part of the
training set (of one file, its shard's columns), written and joined to the finish's barrier; the write that
completes it claims the commit, gathers the K outputs and commits. No function passes over every part, and the
run's figures and warnings are those of one pass over all its examples (to the last bit or so: a matrix product over
part of the columns may round differently)."""

import json

import numpy as np
import pytest

from lnn_core import run_control
from lnn_core.handlers import build_trainer
from lnn_core.ml import diagnostics, metrics, network
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol import sending
from lnn_core.protocol.layout import fit_key, fit_keys
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
    outcomes, config = [], TrainingConfig.from_parameters(parameters)
    for event in fits:  # each in a container of its own, which holds nothing yet (as in Lambda)
        container = build_trainer(session=aws.session, invoker=queue, clock=clock)
        read = reading(container)
        outcomes.append(container.handle(event)["outcome"])
        if data == "parts":  # its own part, and no other
            assert [key for key in read if "/part-" in key] == [f"runs/r1/data/part-{event['shard']}-of-{K}.npz"]
        if outcomes[-1] == "fit":  # the outputs of its own examples: its part's, or its shard's of one file
            output = container.steps._load(fit_key(config, parameters["epochs"], event["shard"]))
            assert output["AL"].shape == (1, [14, 13, 13][event["shard"]]) and len(output["y"]) == output["AL"].shape[1]
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


@pytest.mark.parametrize(
    "site", ["claim_commit", *(pytest.param(s, marks=pytest.mark.slow) for s in ("put_bytes", "transition"))]
)
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


@pytest.mark.parametrize("data", ["parts", pytest.param("one file", marks=pytest.mark.slow)])
def test_a_regressions_finish_of_k_workers_reports_the_figures_of_one_pass(aws, data):
    """Two real-valued targets (labels of two columns, sliced by rows as the examples are): the fits' outputs
    gathered give the RMSE and R² of one pass over every example."""
    rng = np.random.RandomState(0)
    X = rng.randn(50, 3)
    y = np.stack([X @ [1.0, -2.0, 0.5], X[:, 0] - X[:, 1]], axis=1)
    parameters = {
        **parts.PARAMETERS,
        "neurons": [8, 2],
        "activations": ["tanh", "linear"],
        "l2": 0.0,
        "learning_rate": 0.01,
        "workers": 2,
    }
    if data == "parts":
        parts.upload_parts(aws, "r1", 2, X=X, y=y)
    else:
        aws.upload_data("runs/r1/data.npz", X=X, y=y)
        parameters["data"] = "runs/r1/data.npz"
    _, run = parts.run_to_the_end(aws, parameters)
    params = {name: array for name, array in parts.model(aws).items() if name[0] in "Wb" and name[1:].isdigit()}
    final = run["final"]
    assert np.isclose(final["train_rmse"], metrics.rmse(params, X, y, parameters["activations"]), rtol=1e-12, atol=0)
    assert np.isclose(final["train_r2"], metrics.r2(params, X, y, parameters["activations"]), rtol=1e-12, atol=0)


@pytest.mark.parametrize("data", ["parts", pytest.param("one file", marks=pytest.mark.slow)])
def test_a_hidden_layers_dead_units_are_those_dead_in_every_part(aws, data):
    """A learning rate of 2 kills half of a relu layer: the finish counts a unit dead only when it is 0 for every
    example of every part, and warns as one pass would."""
    X, y = blobs(40)
    parameters = {**parts.PARAMETERS, **RELU, "learning_rate": 2.0, "seed": 6}
    if data == "parts":
        parts.upload_parts(aws, "r1", K, X=X, y=y)
    else:
        aws.upload_data("runs/r1/data.npz", X=X, y=y)
        parameters["data"] = "runs/r1/data.npz"
    _, run = parts.run_to_the_end(aws, parameters)
    params = {name: array for name, array in parts.model(aws).items() if name[0] in "Wb" and name[1:].isdigit()}
    fit, Y, config = whole_fit(params, X, y, parameters)
    assert fit.dead_units == (3,)
    assert run["final"]["warnings"] == diagnostics.model_warnings(fit, Y, config)
    assert any("dead" in warning for warning in run["final"]["warnings"])


def test_a_fit_event_of_a_run_of_one_worker_is_refused_before_it_computes(aws):
    X, y = blobs(40)
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    queue, clock = QueueInvoker(), FakeClock()
    trainer = launch(aws, queue, clock, {**PARAMETERS, "workers": 1, "epochs": 1})
    while queue.events[0]["state"] != "finish":
        trainer.handle(queue.events.popleft())
    finish = queue.events.popleft()
    executed, execute = [], trainer._execute
    trainer._execute = lambda position, *args: executed.append(position) or execute(position, *args)
    answer = trainer.handle({**finish, "state": "fit", "shard": 0})
    assert answer["outcome"] == "failed" and "a fit event, but a run of one worker takes none" in answer["reason"]
    assert not executed


def test_a_run_stopped_during_its_finish_and_resumed_after_the_scratch_expired_finishes(world_k):
    """Fit 0's outputs are in when the run stops; a week later they are gone (scratch): the fit that completes the
    resumed finish computes them itself, from the kept final state."""
    aws, queue, clock, trainer = world_k
    fits = to_the_fits(trainer, queue)
    assert trainer.handle(fits[0])["outcome"] == "fit"
    run_control.stop_run(trainer.ports, "r1")
    assert trainer.handle(fits[1])["outcome"] == "stopped"
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="runs/r1/state/")["Contents"]
    for item in listed:  # the lifecycle rule's expiry of the scratch
        if aws.s3.get_object_tagging(Bucket=aws.bucket, Key=item["Key"])["TagSet"]:
            aws.s3.delete_object(Bucket=aws.bucket, Key=item["Key"])
    clock.advance(8 * 86400)
    later = build_trainer(session=aws.session, invoker=queue, clock=clock)
    assert run_control.resume_run(later.ports, "r1")["outcome"] == "continued"
    assert sorted(event["shard"] for event in queue.events) == [1, 2]  # fit 0 is in the barrier
    while queue.events:
        later.handle(queue.events.popleft())
    run = later.ports.table.get_run("r1")
    assert run["status"] == "succeeded", run.get("reason")
    assert run["final"]["train_accuracy"] == 1.0
