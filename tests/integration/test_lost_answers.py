"""Issue 16's findings, each reproduced: a write applied whose answer is lost (botocore then retries it and the
caller sees the retry's answer), a retry inside a live lease, a model visible before its commit, and the rest.

Each test fails on the code before the fix it names. The review's findings R1-R3 are in test_lost_answers_review.py.
"""

import json
from types import SimpleNamespace

import pytest

from lnn_cli.cloud.chaos import client_of, with_lost_answer
from lnn_core import run_control
from lnn_core.aws.sdk import CLAIM_CALL_SECONDS
from lnn_core.handlers import (
    build_launcher,
    build_predictor,
    build_trainer,
    build_watchdog,
)
from lnn_core.protocol import sending
from tests.conftest import FakeClock, QueueInvoker, blobs
from tests.support.deliveries import Delivery, Gate, context, deliver_failing_at

PARAMETERS = {"epochs": 2, "learning_rate": 0.5, "neurons": [3, 1], "activations": ["tanh", "sigmoid"], "seed": 4}
ROUNDS = {**PARAMETERS, "workers": 2, "granularity": "epoch", "batch_size": 20, "reduce": "slices"}


class World:
    """One run's data, a shared queue and clock, and containers of the three functions."""

    def __init__(self, aws):
        self.aws, self.queue, self.clock = aws, QueueInvoker(), FakeClock()
        X, y = blobs(40)
        aws.upload_data("runs/r1/data.npz", X=X, y=y)

    def trainer(self):
        invoker = SimpleNamespace(invoke_async=self.queue.invoke_async)  # each container's own, onto the shared queue
        return build_trainer(session=self.aws.session, invoker=invoker, clock=self.clock)

    def launcher(self):
        return build_launcher(session=self.aws.session, invoker=self.queue, clock=self.clock)

    def watchdog(self):
        return build_watchdog(session=self.aws.session, invoker=self.queue, clock=self.clock)

    def launch(self, parameters=PARAMETERS):
        assert self.launcher().handle({"run_id": "r1", "parameters": parameters})["status"] == "running"

    def run_until(self, trainer, state):
        """Deliver queued events until the next one is of `state`; that one is returned, not delivered."""
        while self.queue.events[0]["state"] != state:
            trainer.handle(self.queue.events.popleft(), context())
        return self.queue.events.popleft()

    def drain(self, trainer):
        while self.queue.events:
            trainer.handle(self.queue.events.popleft(), context())

    def record(self):
        return self.trainer().ports.table.get_run("r1")

    def messages(self):
        return [json.loads(message["Body"]) for message in self.aws.messages()]

    def model_published(self):
        listed = self.aws.s3.list_objects_v2(Bucket=self.aws.bucket, Prefix="runs/r1/model.npz")
        return listed.get("KeyCount", 0) == 1


def lose_answers(handler, port_name: str, method: str, *, when=lambda request: True):
    """Lose the first answer of every request of `handler`'s `port_name` adapter's `method` that `when` picks."""
    client = client_of(port_name, getattr(handler.ports, port_name))
    call = getattr(client, method)
    lost = with_lost_answer(call)
    setattr(client, method, lambda **request: (lost if when(request) else call)(**request))


def wrap(handler, port_name: str, method: str, wrapper):
    """Route `handler`'s requests of `method` through `wrapper(call, request)`."""
    client = client_of(port_name, getattr(handler.ports, port_name))
    call = getattr(client, method)
    setattr(client, method, lambda **request: wrapper(call, request))


def updating(fragment: str):
    return lambda request: fragment in request.get("UpdateExpression", "")


def counted(fragment: str, lost: list):
    """`updating(fragment)`, appending each request it picks to `lost` (to show that an answer was lost)."""

    def pick(request):
        if updating(fragment)(request):
            lost.append(request)
            return True
        return False

    return pick


@pytest.fixture
def world(aws):
    return World(aws)


# ---- 1. the notification claim ----------------------------------------------------------------------------------


def test_1_a_notification_claim_whose_answer_was_lost_still_sends_the_message(world):
    world.launch()
    finish = world.run_until(world.trainer(), "finish")
    trainer = world.trainer()
    lose_answers(trainer, "table", "update_item", when=updating("SET notifier = :claimant"))
    assert trainer.handle(finish, context())["outcome"] == "committed"
    assert [message["status"] for message in world.messages()] == ["succeeded"]  # before the fix: none, ever
    assert world.record()["notified"] is True


def test_1_a_stopped_run_whose_claim_answer_was_lost_still_sends_its_message(world):
    world.launch()
    trainer = world.trainer()
    event = world.run_until(trainer, "backward")
    run_control.stop_run(trainer.ports, "r1")
    stopping = world.trainer()
    lose_answers(stopping, "table", "update_item", when=updating("SET notifier = :claimant"))
    assert stopping.handle(event, context())["outcome"] == "stopped"
    assert [message["status"] for message in world.messages()] == ["stopped"]


def test_1_an_ending_transition_whose_answer_was_lost_reports_the_ending_not_a_duplicate(world):
    world.launch()
    trainer = world.trainer()
    event = world.run_until(trainer, "backward")
    run_control.stop_run(trainer.ports, "r1")
    stopping = world.trainer()
    lose_answers(
        stopping,
        "table",
        "update_item",
        when=lambda request: "stopped" in str(request.get("ExpressionAttributeValues")),
    )
    assert stopping.handle(event, context())["outcome"] == "stopped"
    assert [message["status"] for message in world.messages()] == ["stopped"]


# ---- 2. the other claims: the launch, a round's slices and commit, the re-send, the watchdog's resume ----------


def test_2_a_launch_whose_create_answer_was_lost_sends_step_1(world):
    launcher = world.launcher()
    lose_answers(launcher, "table", "put_item")
    answer = launcher.handle({"run_id": "r1", "parameters": PARAMETERS})
    assert answer == {"run_id": "r1", "status": "running"}  # before the fix: a "duplicate" that sent nothing
    assert [event["step"] for event in world.queue.events] == [1]
    world.drain(world.trainer())
    assert world.record()["status"] == "succeeded"


def test_2_a_round_whose_slices_claim_answer_was_lost_sends_its_slices(world):
    """The shard that completes a round claims the sending of its K slice events: the claim is applied, its answer
    lost, and boto's retry finds the lease held by its own name, so it wins again and sends the K slices, once."""
    world.launch(ROUNDS)
    trainer = world.trainer()
    first = world.run_until(trainer, "shard")  # the first round's two shard events
    second = world.queue.events.popleft()
    completing, lost = world.trainer(), []
    lose_answers(completing, "table", "update_item", when=counted("SET slices_lease", lost))
    assert trainer.handle(first, context())["outcome"] == "shard"
    assert completing.handle(second, context())["outcome"] == "round complete"  # without `slices_by`: "shard"
    assert len(lost) == 1
    step = second["step"]
    assert [(event["state"], event["step"], event["slice"]) for event in world.queue.events] == [
        ("slice", step, 0),
        ("slice", step, 1),
    ]
    assert world.trainer().handle(dict(second), context())["outcome"] == "shard"  # a twin: the lease is live
    assert len(world.queue.events) == 2
    world.drain(trainer)
    assert world.record()["status"] == "succeeded"


def test_a_round_whose_commit_claim_answer_was_lost_commits_once(world):
    """The slice that completes a round claims its commit: the claim is applied, its answer lost, and boto's retry
    finds the lease held by its own name, so it wins again, commits the round and sends the next round's K shard
    events, once."""
    world.launch(ROUNDS)
    trainer = world.trainer()
    first = world.run_until(trainer, "slice")  # the first round's two slice events
    second = world.queue.events.popleft()
    step = second["step"]
    completing, lost = world.trainer(), []
    lose_answers(completing, "table", "update_item", when=counted("SET commit_lease", lost))
    assert trainer.handle(first, context())["outcome"] == "slice"
    assert completing.handle(second, context())["outcome"] == "committed"  # without `commit_by`: "slice", a stall
    assert len(lost) == 1
    assert world.record()["committed_step"] == step
    assert [(event["state"], event["step"], event["shard"]) for event in world.queue.events] == [
        ("shard", step + 1, 0),
        ("shard", step + 1, 1),
    ]
    assert world.trainer().handle(dict(second), context())["outcome"] == "duplicate"  # a twin: committed and sent
    assert len(world.queue.events) == 2 and world.record()["committed_step"] == step
    world.drain(trainer)
    assert world.record()["status"] == "succeeded"


def test_2_a_re_send_whose_claim_answer_was_lost_re_sends(world):
    world.launch()
    event = world.queue.events.popleft()
    deliver_failing_at(world.trainer(), "invoker.invoke_async", event)
    world.clock.advance(60)  # Lambda's retry, once the commit's lease expired
    retry = world.trainer()
    lose_answers(retry, "table", "update_item", when=updating("SET send_lease = :lease"))
    assert retry.handle(event, context())["outcome"] == "resent"  # before the fix: "duplicate", a stall
    assert len(world.queue.events) == 1


def test_2_a_watchdog_resume_whose_answer_was_lost_resumes_and_counts_once(world):
    world.launch()
    world.queue.events.clear()  # step 1's event is lost
    world.clock.advance(901)
    watchdog = world.watchdog()
    lose_answers(watchdog, "table", "update_item", when=updating("resumes = :resumes"))
    [outcome] = watchdog.handle()["stalled"]
    assert outcome["outcome"] == "resumed"  # before the fix: "moved on", with the resume counted and nothing sent
    assert world.record()["resumes"] == 1 and len(world.queue.events) == 1


# ---- 3. a retry inside the lease, and the watchdog's sweep of messages owed ------------------------------------


def test_3_a_message_whose_claimant_died_and_whose_retry_came_inside_the_lease_is_sent_by_the_watchdog(world):
    world.launch()
    finish = world.run_until(world.trainer(), "finish")
    deliver_failing_at(world.trainer(), "notifier.publish", finish)
    world.clock.advance(1)  # a system error's retry comes after about a second: the lease is live
    assert world.trainer().handle(finish, context("request-1"))["outcome"] == "ignored"
    assert world.messages() == []
    assert world.watchdog().handle()["messages_owed"] == [  # the claimant may still be sending
        {"run_id": "r1", "outcome": "waiting", "reason": "a delivery holds its message's claim"}
    ]
    world.clock.advance(60)
    outcomes = world.watchdog().handle()["messages_owed"]
    assert outcomes == [{"run_id": "r1", "outcome": "message sent", "status": "succeeded"}]
    assert [message["status"] for message in world.messages()] == ["succeeded"]  # before the fix: never
    assert world.watchdog().handle()["messages_owed"] == []  # off the list once sent
    assert world.model_published()


def test_3_a_run_whose_message_was_sent_is_not_on_the_watchdogs_list(world):
    world.launch()
    world.drain(world.trainer())
    assert world.trainer().ports.table.runs_awaiting_message() == []
    assert [message["status"] for message in world.messages()] == ["succeeded"]


# ---- 4. the model is published only after the finish committed --------------------------------------------------


def test_4_a_finish_that_died_before_its_commit_publishes_no_model_and_a_stop_publishes_its_own_after_its_commit(world):
    world.launch()
    finish = world.run_until(world.trainer(), "finish")
    deliver_failing_at(world.trainer(), "table.transition", finish)
    assert not world.model_published()  # before the fix: model.npz, which the PredictLambda served
    predictor = build_predictor(session=world.aws.session)
    answer = predictor.handle({"run_id": "r1", "X": [[0.0, 0.0, 0.0, 0.0]]})
    assert "predictions" not in answer and "model" in answer["error"], answer
    run_control.stop_run(world.trainer().ports, "r1")
    assert not world.model_published()
    world.clock.advance(60)
    assert world.trainer().handle(finish, context())["outcome"] == "stopped"
    assert world.model_published() and world.record()["model_epoch"] == 2  # the last committed epoch's, after the stop
    assert [message["status"] for message in world.messages()] == ["stopped"]


def test_4_the_model_is_published_before_the_message_when_the_finisher_died_after_its_commit(world):
    world.launch()
    finish = world.run_until(world.trainer(), "finish")
    deliver_failing_at(world.trainer(), "store.copy", finish)
    assert world.record()["status"] == "succeeded" and not world.model_published() and world.messages() == []
    world.clock.advance(60)
    assert world.trainer().handle(finish, context())["outcome"] == "ignored"  # the retry: publishes both
    assert world.model_published() and [message["status"] for message in world.messages()] == ["succeeded"]


# ---- 6. lnn resume refreshes the heartbeat ----------------------------------------------------------------------


def test_6_lnn_resume_refreshes_the_heartbeat(world):
    world.launch()
    world.queue.events.clear()
    world.clock.advance(600)
    assert run_control.resume_run(world.trainer().ports, "r1")["outcome"] == "resumed"
    assert world.record()["heartbeat_at"] == world.clock()  # before the fix: the launch's
    world.clock.advance(600)  # 20 minutes after the launch, 10 after the resume: not stalled
    assert world.watchdog().handle()["stalled"] == []


# ---- 7. the SDK's timeouts fit the lease; messages carry an idempotency key -------------------------------------


def test_7_a_claimant_whose_claim_took_most_of_its_lease_leaves_the_message_to_the_sweep(world):
    """The lease is taken before the claim is sent: a claim slow to answer leaves less than one SDK call of lease
    for the Publish, so the claimant does not publish (a sweep that found the lease expired meanwhile would send a
    second copy); the watchdog's sweep sends the one message (review R4)."""
    world.launch()
    finish = world.run_until(world.trainer(), "finish")
    finisher = world.trainer()

    def slow_claim(call, request):
        answer = call(**request)
        if "SET notifier" in request.get("UpdateExpression", ""):
            world.clock.advance(
                sending.LEASE_SECONDS - CLAIM_CALL_SECONDS + 1
            )  # its attempts timed out, then one answered
        return answer

    def slow_publish(call, request):
        world.clock.advance(CLAIM_CALL_SECONDS)  # within its SDK budget, but past the lease
        world.watchdog().handle()  # the scheduled sweep runs meanwhile
        return call(**request)

    wrap(finisher, "table", "update_item", slow_claim)
    wrap(finisher, "notifier", "publish", slow_publish)
    finisher.handle(finish, context())
    world.clock.advance(60)
    world.watchdog().handle()
    assert [message["status"] for message in world.messages()] == ["succeeded"]  # before the fix: two


def test_7_a_publish_whose_answer_was_lost_is_delivered_twice_with_one_idempotency_key(world):
    world.launch()
    finish = world.run_until(world.trainer(), "finish")
    trainer = world.trainer()
    lose_answers(trainer, "notifier", "publish")
    trainer.handle(finish, context())
    messages = world.messages()
    assert len(messages) == 2  # the README's at-least-once case: a standard topic delivers a retried Publish twice
    assert {message["message_id"] for message in messages} == {"lnn-run-r1"}


# ---- 8. no epoch item changes after its step committed ----------------------------------------------------------


def test_8_a_losing_twin_does_not_rewrite_a_committed_epoch_item(world, atomic_moto):
    world.launch({**PARAMETERS, "granularity": "epoch"})
    event = world.queue.events.popleft()
    loser, winner = world.trainer(), world.trainer()
    gate = Gate(loser.ports.table, "put_epoch_items")  # the loser computed epoch 1 and is about to write its item
    late = Delivery(loser, event, context("request-loser"))
    late.start()
    gate.wait_reached()
    assert winner.handle(json.loads(json.dumps(event)), context("request-winner"))["outcome"] == "committed"
    committed = winner.ports.table.list_epochs("r1")
    gate.opened.set()
    assert late.finish() == "duplicate"
    assert winner.ports.table.list_epochs("r1") == committed  # before the fix: the loser's timestamps


# ---- 9. a launch for replaced data is told so ------------------------------------------------------------------


def test_9_a_second_launch_after_the_data_was_replaced_is_refused_and_says_why(world):
    world.launch()
    X, y = blobs(40, seed=1)
    world.aws.upload_data("runs/r1/data.npz", X=X, y=y)
    answer = world.launcher().handle({"run_id": "r1", "parameters": PARAMETERS})
    assert answer["status"] == "rejected" and "created from other data" in answer["reason"], answer


def test_9_a_repeated_launch_of_the_same_data_is_still_recognised(world):
    world.launch()
    answer = world.launcher().handle({"run_id": "r1", "parameters": PARAMETERS})
    assert answer == {"run_id": "r1", "status": "running", "duplicate": True}
