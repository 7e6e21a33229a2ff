"""Stop pauses, resume continues (issue 17, section 5): a stopped run keeps the model of its last committed epoch,
and `lnn resume` continues it from its last committed step, exactly once, to the result of an uninterrupted run
bit for bit, with one commit per step and one message per ending, under twins, a lost answer and a round of K = 2.
"""

import io
import json
import threading

import numpy as np
import pytest

from lnn_core import run_control
from lnn_core.errors import LnnInputError
from lnn_core.handlers import (
    build_launcher,
    build_predictor,
    build_trainer,
    build_watchdog,
)
from lnn_core.ml import training
from lnn_core.protocol import ending, sending
from lnn_core.protocol.layout import model_key, staged_model_key
from tests.conftest import FakeClock, QueueInvoker, blobs
from tests.integration.test_lost_answers import lose_answers
from tests.support.deliveries import Gate, context, deliver_failing_at

LAYERS = {
    "epochs": 3,
    "learning_rate": 0.5,
    "neurons": [3, 1],
    "activations": ["tanh", "sigmoid"],
    "seed": 5,
    "granularity": "layer",
}
ROUNDS = {
    "epochs": 3,
    "learning_rate": 0.5,
    "neurons": [3, 1],
    "activations": ["tanh", "sigmoid"],
    "seed": 4,
    "workers": 2,
    "granularity": "epoch",
    "batch_size": 20,
    "reduce": "slices",
}  # 2 rounds per epoch
X, Y = blobs(40)


class World:
    """One run r1: its data, a shared queue and clock, containers of the trainer, and `lnn`'s own ports."""

    def __init__(self, aws, parameters):
        self.aws, self.parameters, self.queue, self.clock = aws, parameters, QueueInvoker(), FakeClock()
        self.outcomes: list[str] = []
        aws.upload_data("runs/r1/data.npz", X=X, y=Y)
        launched = build_launcher(session=aws.session, invoker=self.queue, clock=self.clock).handle(
            {"run_id": "r1", "parameters": parameters}
        )
        assert launched["status"] == "running"

    def trainer(self):
        return build_trainer(session=self.aws.session, invoker=self.queue, clock=self.clock)

    def cli(self):
        """The ports `lnn stop` and `lnn resume` use."""
        return self.trainer().ports

    def deliver(self, *, twins=False, until=None):
        """Deliver queued events (each twice with `twins`: one twin with the original's request id, then one with
        its own) until the queue is empty or `until(record)` holds before a delivery."""
        count = 0
        while self.queue.events and not (until and until(self.record())):
            event = self.queue.events.popleft()
            count += 1
            request_ids = [f"req-{count}", f"req-{count}", f"req-{count}-twin"] if twins else [f"req-{count}"]
            for request_id in request_ids:
                self.outcomes.append(
                    self.trainer().handle(json.loads(json.dumps(event)), context(request_id))["outcome"]
                )

    def record(self):
        return self.trainer().ports.table.get_run("r1")

    def messages(self):
        return [json.loads(message["Body"]) for message in self.aws.messages()]

    def model(self):
        body = self.aws.s3.get_object(Bucket=self.aws.bucket, Key=model_key("r1"))["Body"].read()
        with np.load(io.BytesIO(body)) as npz:
            return {name: npz[name] for name in npz.files}

    def has(self, key):
        return self.aws.s3.list_objects_v2(Bucket=self.aws.bucket, Prefix=key).get("KeyCount", 0) == 1


def reference(parameters, epochs=None):
    options = {key: parameters[key] for key in ("batch_size", "workers") if key in parameters}
    return training.train_reference(
        X,
        Y,
        neurons=parameters["neurons"],
        activations=parameters["activations"],
        learning_rate=parameters["learning_rate"],
        epochs=epochs or parameters["epochs"],
        seed=parameters["seed"],
        **options,
    )


def assert_params(model, params):
    assert all(model[name].tobytes() == params[name].tobytes() for name in params)


def assert_like_an_uninterrupted_run(world, steps):
    """The run ended like the plain NumPy loop, bit for bit, after exactly one commit of each of its `steps`."""
    run = world.record()
    assert run["status"] == "succeeded", run.get("reason")
    params, costs = reference(world.parameters)
    assert_params(world.model(), params)
    assert [item["cost"] for item in world.trainer().ports.table.committed_epochs(run)] == costs
    assert run["committed_step"] == steps and world.outcomes.count("committed") == steps
    assert run["model_epoch"] == world.parameters["epochs"] and int(world.model()["epoch"]) == run["model_epoch"]


def to_the_stop(world):
    """Train into epoch 2, `lnn stop`: the queue holds the one event whose delivery will stop the run."""
    world.deliver(until=lambda run: run["progress_epoch"] == 1 and run["committed_step"] >= 7)
    run_control.stop_run(world.cli(), "r1")
    assert len(world.queue.events) == 1
    return world.queue.events.popleft()


def stop_dying_before_publishing(world, event):
    """Deliver the stop's `event` to a container that commits the stop, then dies before publishing its model."""
    deliver_failing_at(world.trainer(), "store.copy", event, "stop", failure=ConnectionError("died before publishing"))


def resume_dying_before_its_write(world):
    """`lnn resume`, once the dead stop's lease on its message expired, dying before its own write to the run."""
    cli = world.trainer()
    cli.ports.table.continue_stopped = lambda *args, **kwargs: (_ for _ in ()).throw(ConnectionError("died"))
    world.clock.advance(sending.LEASE_SECONDS + 1)  # the dead claimant's lease on the stop's message expires
    with pytest.raises(ConnectionError):
        run_control.resume_run(cli.ports, "r1")


def stop_mid_epoch_2(world, *, twins=False):
    """Train through epoch 1 and into epoch 2, then `lnn stop`: the next delivery stops the run."""
    world.deliver(twins=twins, until=lambda run: run["progress_epoch"] == 1 and run["committed_step"] >= 7)
    run_control.stop_run(world.cli(), "r1")
    world.deliver(twins=twins)
    run = world.record()
    assert run["status"] == "stopped" and run["progress_epoch"] == 1
    return run


LAYER_STEPS = 3 * (2 * 2 + 1) + 1  # 3 epochs of a start and 2 layers forward and back, then the finish


@pytest.mark.parametrize("twins", [False, True])
def test_a_stopped_run_keeps_its_last_epochs_model_and_resume_continues_it_bit_for_bit(aws, twins):
    """Every event delivered three times when `twins`: twice with one request id, once with its own."""
    world = World(aws, LAYERS)
    stopped = stop_mid_epoch_2(world, twins=twins)
    assert stopped["model_epoch"] == 1 and stopped["next_event"]["step"] == stopped["committed_step"] + 1
    model = world.model()  # published after the stop committed: epoch 1's, as the finish would have written it
    assert int(model["epoch"]) == 1
    assert_params(model, reference(LAYERS, epochs=1)[0])
    assert [(m["status"], m["message_id"]) for m in world.messages()] == [("stopped", "lnn-run-r1")]

    answers = [run_control.resume_run(world.cli(), "r1") for _ in range(2 if twins else 1)]  # `lnn resume`, twice
    assert answers[0] == {
        "run_id": "r1",
        "outcome": "continued",
        "step": stopped["committed_step"] + 1,
        "epoch": 1,
        "model_epoch": 1,
    }
    assert [answer["outcome"] for answer in answers[1:]] == ["resumed"] * (len(answers) - 1)  # a re-send: dropped
    run = world.record()
    assert run["status"] == "running" and not run["stop_requested"] and run["continuations"] == 1
    assert run["heartbeat_at"] == world.clock() and run["resumes"] == 0 and run["model_epoch"] == 1
    assert "message_due" not in run and "reason" not in run
    assert not world.has(staged_model_key("r1", 1))  # published, then removed: no late copy can bring it back
    assert [event["step"] for event in world.queue.events] == [run["committed_step"] + 1] * len(answers)

    world.deliver(twins=twins)
    assert_like_an_uninterrupted_run(world, LAYER_STEPS)
    assert [(m["status"], m["message_id"]) for m in world.messages()] == [("succeeded", "lnn-run-r1/continued-1")]


def test_a_resume_whose_write_answer_was_lost_continues_once(aws):
    world = World(aws, LAYERS)
    stopped = stop_mid_epoch_2(world)
    world.messages()
    cli = world.trainer()
    lose_answers(cli, "table", "update_item", when=lambda request: "continued_by" in request["UpdateExpression"])
    answer = run_control.resume_run(cli.ports, "r1")  # the SDK's retry finds the run running: the record names us
    assert answer["outcome"] == "continued"
    assert [event["step"] for event in world.queue.events] == [stopped["committed_step"] + 1]  # sent once
    assert world.record()["continuations"] == 1
    world.deliver()
    assert_like_an_uninterrupted_run(world, LAYER_STEPS)
    assert [m["message_id"] for m in world.messages()] == ["lnn-run-r1/continued-1"]


def test_a_stop_during_a_round_of_two_workers_resumes_only_the_shard_not_in(aws):
    world = World(aws, ROUNDS)
    world.deliver(until=lambda run: run["progress_epoch"] == 1)  # epoch 2's first round is sent: its 2 shards
    shards = list(world.queue.events)
    world.queue.events.clear()
    assert [event["shard"] for event in shards] == [0, 1]
    assert world.trainer().handle(shards[0], context("shard-0"))["outcome"] == "shard"
    run_control.stop_run(world.cli(), "r1")
    for request_id in ("shard-1", "shard-1-twin"):  # its twin finds the run stopped
        world.outcomes.append(world.trainer().handle(json.loads(json.dumps(shards[1])), context(request_id))["outcome"])
    assert world.outcomes[-2:] == ["stopped", "ignored"]
    assert world.record()["model_epoch"] == 1 and int(world.model()["epoch"]) == 1
    assert_params(world.model(), reference(ROUNDS, epochs=1)[0])
    assert [m["status"] for m in world.messages()] == ["stopped"]

    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"
    assert [(event["state"], event.get("shard")) for event in world.queue.events] == [("shard", 1)]  # shard 0 is in
    world.deliver(twins=True)
    run = world.record()
    assert run["status"] == "succeeded"
    params, costs = reference(ROUNDS)
    assert_params(world.model(), params)
    assert [item["cost"] for item in world.trainer().ports.table.committed_epochs(run)] == costs
    assert run["committed_step"] == 3 * 2 + 2  # start, 6 rounds, finish: one commit each
    assert [m["message_id"] for m in world.messages()] == ["lnn-run-r1/continued-1"]


ROUND_STEPS = 1 + 3 * 2 + 1  # the start, 3 epochs of 2 rounds, the finish


@pytest.mark.parametrize("batch", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_a_stop_while_a_rounds_slices_are_in_flight_keeps_the_last_epochs_model_and_resumes_the_slice_not_in(
    aws, batch
):
    """`lnn stop` while epoch 2's round `batch` has every shard in and one of its two slices joined: the other
    slice's delivery stops the run at its committed step (the round before), with epoch 1's model (in the second
    round, not the state that the first round committed); `lnn resume` sends only the slice not in, and the run
    ends as an uninterrupted one bit for bit."""
    world = World(aws, ROUNDS)
    step = 1 + 2 + batch  # the start, epoch 1's two rounds, then epoch 2's round `batch`
    world.deliver(until=lambda run: run["committed_step"] == step - 1)  # the round's two shards are sent

    def handle(event, request_id):
        world.outcomes.append(world.trainer().handle(json.loads(json.dumps(event)), context(request_id))["outcome"])
        return world.outcomes[-1]

    shards = [world.queue.events.popleft() for _ in range(2)]
    assert [(event["state"], event["step"], event["shard"]) for event in shards] == [
        ("shard", step, 0),
        ("shard", step, 1),
    ]
    assert [handle(event, f"shard-{event['shard']}") for event in shards] == ["shard", "round complete"]
    slices = [world.queue.events.popleft() for _ in range(2)]
    assert not world.queue.events and [event["slice"] for event in slices] == [0, 1]
    assert handle(slices[1], "slice-1") == "slice"  # slice 1 joined; slice 0 is in flight
    run_control.stop_run(world.cli(), "r1")
    assert [handle(slices[0], request_id) for request_id in ("slice-0", "slice-0-twin")] == ["stopped", "ignored"]

    run = world.record()
    assert run["status"] == "stopped" and run["committed_step"] == step - 1
    assert run["progress_epoch"] == 1 and run["model_epoch"] == 1 and int(world.model()["epoch"]) == 1
    assert_params(world.model(), reference(ROUNDS, epochs=1)[0])  # epoch 1's, bit for bit
    assert [m["status"] for m in world.messages()] == ["stopped"]
    progress = world.trainer().ports.table.round_progress("r1", step)
    assert progress.shards_done == {0, 1} and progress.slices_done == {1}

    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"
    assert [(event["state"], event["step"], event.get("slice")) for event in world.queue.events] == [("slice", step, 0)]
    world.deliver(twins=True)
    assert_like_an_uninterrupted_run(world, ROUND_STEPS)
    assert [m["message_id"] for m in world.messages()] == ["lnn-run-r1/continued-1"]


@pytest.mark.usefixtures("atomic_moto")
def test_a_late_resume_of_a_stop_that_was_continued_and_finished_changes_nothing(aws):
    """Two `lnn resume` of one stop: the late one's write must not bring back the run it read as stopped."""
    world = World(aws, LAYERS)
    stop_mid_epoch_2(world)
    late = world.cli()
    gate = Gate(late.table, "continue_stopped")
    result = {}

    def resume_late():
        try:
            result["answer"] = run_control.resume_run(late, "r1")
        except LnnInputError as refused:
            result["refused"] = str(refused)

    thread = threading.Thread(target=resume_late, daemon=True)
    thread.start()
    gate.wait_reached()  # it read the run stopped, published the stop's model, and is about to write
    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"
    world.deliver()
    assert world.record()["status"] == "succeeded"
    world.messages()
    gate.opened.set()
    thread.join(30)
    run = world.record()
    assert run["status"] == "succeeded" and run["continuations"] == 1, "a late resume brought back a finished run"
    assert result == {"refused": "run r1 is succeeded; only a running or stopped run can be resumed"}
    assert not world.queue.events and not world.messages()


def test_a_late_claimant_of_the_stops_message_sends_nothing_once_the_run_was_continued(aws):
    """The stop's delivery died after its commit, before its message: `lnn resume` cancels that message; a late
    retry of the stop (or the watchdog) with the stopped record in hand publishes neither the model nor a message."""
    world = World(aws, LAYERS)
    stop_dying_before_publishing(world, to_the_stop(world))
    stale = world.record()
    assert stale["status"] == "stopped" and stale["message_due"] and not world.has(model_key("r1"))

    world.clock.advance(sending.LEASE_SECONDS + 1)  # the dead claimant's lease on the stop's message expires
    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"
    assert int(world.model()["epoch"]) == 1  # the resume published the stop's model itself
    ending.ensure_notified(world.trainer().ports, stale, claimant="late-retry")
    world.clock.advance(3600)
    assert build_watchdog(session=aws.session, invoker=world.queue, clock=world.clock).handle({})["messages_owed"] == []
    assert not world.messages() and world.record()["notified"] is False
    world.deliver()
    assert [(m["status"], m["message_id"]) for m in world.messages()] == [("succeeded", "lnn-run-r1/continued-1")]


def test_a_resume_that_died_before_its_write_leaves_the_stop_whole_and_its_message_owed(aws):
    """`lnn resume` published the stop's model and removed its staged copy, then died: the run is still stopped
    with its model, the watchdog still sends the stop's message, and a second `lnn resume` continues it."""
    world = World(aws, LAYERS)
    stop_dying_before_publishing(world, to_the_stop(world))
    resume_dying_before_its_write(world)
    assert world.record()["status"] == "stopped" and int(world.model()["epoch"]) == 1
    assert not world.has(staged_model_key("r1", 1))
    world.clock.advance(3600)
    swept = build_watchdog(session=aws.session, invoker=world.queue, clock=world.clock).handle({})["messages_owed"]
    assert swept == [{"run_id": "r1", "outcome": "message sent", "status": "stopped"}]
    assert [(m["status"], m["message_id"]) for m in world.messages()] == [("stopped", "lnn-run-r1")]
    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"
    world.deliver()
    assert world.record()["status"] == "succeeded" and world.record()["committed_step"] == LAYER_STEPS
    assert [(m["status"], m["message_id"]) for m in world.messages()] == [("succeeded", "lnn-run-r1/continued-1")]


def test_stop_again_after_a_resume_keeps_the_later_epochs_model_with_its_own_message(aws):
    world = World(aws, LAYERS)
    stop_mid_epoch_2(world)
    run_control.resume_run(world.cli(), "r1")
    world.deliver(until=lambda run: run["progress_epoch"] == 2)
    run_control.stop_run(world.cli(), "r1")
    world.deliver()
    run = world.record()
    assert run["status"] == "stopped" and run["model_epoch"] == 2 and run["continuations"] == 1
    assert_params(world.model(), reference(LAYERS, epochs=2)[0])
    assert [m["message_id"] for m in world.messages()] == ["lnn-run-r1", "lnn-run-r1/continued-1"]


def test_the_predictor_and_the_run_say_which_epoch_a_stopped_runs_model_is_from(aws):
    world = World(aws, LAYERS)
    stop_mid_epoch_2(world)
    predictor = build_predictor(session=aws.session)
    answer = predictor.handle({"run_id": "r1", "X": [[0.0, 0.0, 0.0, 0.0]]})
    assert answer["model_epoch"] == 1 and len(answer["predictions"]) == 1
    assert predictor.handle({"run_id": "r1", "describe": True})["model_epoch"] == 1
    assert ending.published_model(world.record()) == (model_key("r1"), 1)


def test_a_run_stopped_before_its_first_epoch_has_no_model_and_continues(aws):
    world = World(aws, LAYERS)
    world.deliver(until=lambda run: run["committed_step"] == 2)
    run_control.stop_run(world.cli(), "r1")
    world.deliver()
    run = world.record()
    assert run["status"] == "stopped" and "model_epoch" not in run and not world.has(model_key("r1"))
    assert ending.published_model(run) is None
    assert (
        ending.no_model(run)
        == "run r1 was stopped before its first epoch ended and has no model; continue it with `lnn resume r1`"
    )
    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"
    world.deliver()
    assert_like_an_uninterrupted_run(world, LAYER_STEPS)


def test_resume_refuses_a_finished_run_and_a_stop_of_an_earlier_release(aws):
    world = World(aws, LAYERS)
    stop_mid_epoch_2(world)
    world.trainer().ports.table._table.update_item(
        Key={"run_id": "r1", "epoch": 0},
        UpdateExpression="SET next_event = :none",
        ExpressionAttributeValues={":none": None},
    )
    with pytest.raises(LnnInputError, match="stopped by an earlier release"):
        run_control.resume_run(world.cli(), "r1")
    assert world.record()["status"] == "stopped"
