"""Exactly-once under duplicates and crashes, stop, resume after a lost invocation, and the watchdog. The bounds of a
run's steps are in test_run_control_step_bounds.py."""

import io
import json

import numpy as np
import pytest

from lnn_core import run_control
from lnn_core.handlers import build_launcher, build_trainer, build_watchdog
from lnn_core.protocol import ending, sending
from tests.conftest import FakeClock, QueueInvoker, blobs

PARAMETERS = {"epochs": 3, "learning_rate": 0.5, "neurons": [3, 1], "activations": ["tanh", "sigmoid"], "seed": 5}


class FlakyInvoker(QueueInvoker):
    """Crashes (raises) on the calls whose numbers are listed, after or before delivering."""

    def __init__(self, crash_after=(), crash_before=()):
        super().__init__()
        self.calls, self.crash_after, self.crash_before = 0, set(crash_after), set(crash_before)

    def invoke_async(self, payload):
        self.calls += 1
        if self.calls in self.crash_before:
            raise ConnectionError("injected crash before invoke")
        super().invoke_async(payload)
        if self.calls in self.crash_after:
            raise ConnectionError("injected crash after invoke")


RETRY_BACKOFF_SECONDS = 60  # Lambda's first retry of a failed async event comes about a minute later


def launch(aws, queue, run_id="r1", parameters=PARAMETERS, clock=None):
    X, y = blobs()
    aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
    clock = clock or FakeClock()
    launched = build_launcher(session=aws.session, invoker=queue, clock=clock).handle(
        {"run_id": run_id, "parameters": parameters}
    )
    assert launched["status"] == "running"
    return build_trainer(session=aws.session, invoker=queue, clock=clock)


def deliver_all(trainer, queue, *, retries=2):
    """Deliver queued events in order, retrying an event that raised a minute later, as Lambda's async retries do."""
    outcomes = []
    while queue.events:
        event = queue.events.popleft()
        for _attempt in range(retries + 1):
            try:
                outcomes.append(trainer.handle(event)["outcome"])
                break
            except ConnectionError:
                outcomes.append("crashed")
                trainer.ports.clock.advance(RETRY_BACKOFF_SECONDS)
    return outcomes


def final_model(aws, run_id="r1"):
    with np.load(
        io.BytesIO(aws.s3.get_object(Bucket=aws.bucket, Key=f"runs/{run_id}/model.npz")["Body"].read())
    ) as npz:
        return {name: npz[name] for name in npz.files if name.startswith(("W", "b"))}


@pytest.fixture
def clean(aws):
    queue = QueueInvoker()
    trainer = launch(aws, queue, run_id="clean")
    deliver_all(trainer, queue)
    aws.messages()
    return final_model(aws, "clean"), [i["cost"] for i in trainer.ports.table.list_epochs("clean")]


def assert_like_clean(aws, trainer, clean):
    model, costs = clean
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded"
    got = final_model(aws)
    assert all(np.array_equal(got[name], model[name]) for name in model)
    assert [item["cost"] for item in trainer.ports.table.list_epochs("r1")] == costs
    messages = aws.messages()
    assert len(messages) == 1 and json.loads(messages[0]["Body"])["status"] == "succeeded"


def test_every_event_delivered_twice(aws, clean):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    outcomes = []
    while queue.events:
        event = queue.events.popleft()
        outcomes += [trainer.handle(event)["outcome"], trainer.handle(json.loads(json.dumps(event)))["outcome"]]
    assert outcomes.count("committed") == 3 * 5 + 1
    assert set(outcomes) == {"committed", "duplicate", "ignored"}
    assert_like_clean(aws, trainer, clean)


def test_crash_after_commit_before_invoke_is_resent_by_the_retry(aws, clean):
    queue = FlakyInvoker(crash_before={4, 9})  # call 1 is the launcher's
    trainer = launch(aws, queue)
    outcomes = deliver_all(trainer, queue)
    assert outcomes.count("crashed") == 2 and outcomes.count("resent") == 2
    assert_like_clean(aws, trainer, clean)


def test_crash_after_invoke_makes_only_a_harmless_duplicate(aws, clean):
    queue = FlakyInvoker(crash_after={5})
    trainer = launch(aws, queue)
    outcomes = deliver_all(trainer, queue)
    assert outcomes.count("crashed") == 1 and outcomes.count("committed") == 15  # the crashed step had committed
    assert outcomes.count("resent") == 1 and outcomes.count("duplicate") == 1  # its retry resent; the twin was dropped
    assert_like_clean(aws, trainer, clean)


def test_late_duplicate_after_the_chain_moved_on_sends_nothing(aws, clean):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    early = None
    for _ in range(6):
        event = queue.events.popleft()
        early = early or json.loads(json.dumps(event))
        trainer.handle(event)
    assert trainer.handle(early)["outcome"] == "duplicate" and len(queue.events) == 1
    deliver_all(trainer, queue)
    assert_like_clean(aws, trainer, clean)


def test_stop_halts_at_the_next_step_boundary(aws):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    for _ in range(4):
        trainer.handle(queue.events.popleft())
    run_control.stop_run(trainer.ports, "r1")
    assert trainer.handle(queue.events.popleft())["outcome"] == "stopped"
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "stopped" and run["committed_step"] == 4 and not queue.events
    messages = aws.messages()
    assert len(messages) == 1 and messages[0]["MessageAttributes"]["status"]["StringValue"] == "stopped"
    assert "stopped" in messages[0]["Body"]


def test_resume_after_a_lost_invocation(aws, clean):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    for _ in range(7):
        trainer.handle(queue.events.popleft())
    queue.events.clear()  # the invocation is lost: the chain is broken
    assert run_control.resume_run(trainer.ports, "r1")["outcome"] == "resumed"
    deliver_all(trainer, queue)
    assert_like_clean(aws, trainer, clean)


STALL_SECONDS, TIMEOUT_SECONDS, EVENT_AGE_SECONDS = 1200, 900, 21600


def watchdog_for(aws, queue, clock, monkeypatch):
    for name, value in {
        "LNN_STALL_SECONDS": STALL_SECONDS,
        "LNN_TRAINER_TIMEOUT_SECONDS": TIMEOUT_SECONDS,
        "LNN_EVENT_AGE_SECONDS": EVENT_AGE_SECONDS,
    }.items():
        monkeypatch.setenv(name, str(value))
    return build_watchdog(session=aws.session, invoker=queue, clock=clock)


def test_watchdog_resumes_a_stalled_run_and_leaves_live_and_finished_ones_alone(aws, clean, monkeypatch):
    queue, clock = QueueInvoker(), FakeClock()
    trainer = launch(aws, queue, clock=clock)
    watchdog = watchdog_for(aws, queue, clock, monkeypatch)
    trainer.handle(queue.events.popleft())
    queue.events.clear()  # step 2's invocation is lost
    clock.advance(STALL_SECONDS - 1)
    assert watchdog.handle({})["stalled"] == []  # not yet: a slow or queued step is not a stalled one
    clock.advance(2)
    assert [s["outcome"] for s in watchdog.handle({})["stalled"]] == ["resumed"]
    deliver_all(trainer, queue)
    assert_like_clean(aws, trainer, clean)
    clock.advance(10 * STALL_SECONDS)
    assert watchdog.handle({})["stalled"] == []  # finished runs are left alone


def test_a_started_step_is_alive_until_its_timeout_whenever_its_event_was_sent(aws, monkeypatch):
    """The stall clock starts when a delivery starts the step, not at the previous commit: an event that waited in
    the async queue does not make its step look stalled while it runs."""
    queue, clock = QueueInvoker(), FakeClock()
    trainer = launch(aws, queue, clock=clock)
    watchdog = watchdog_for(aws, queue, clock, monkeypatch)
    clock.advance(STALL_SECONDS - 60)  # step 1's event waits in the queue (throttled) ...
    trainer.ports.table.mark_started("r1", 1, at=clock())  # ... then a delivery starts it
    clock.advance(TIMEOUT_SECONDS - 1)  # and runs for almost the whole timeout
    assert watchdog.handle({})["stalled"] == []


def test_watchdog_fails_a_run_only_when_nothing_of_its_step_can_be_in_flight(aws, monkeypatch):
    """After `MAX_RESUMES` resumes in a row the watchdog stops re-sending and waits until its last event's maximum
    age and a timeout have passed (a throttled run's events may still be queued), then fails the run."""
    queue, clock = QueueInvoker(), FakeClock()
    trainer = launch(aws, queue, clock=clock)
    watchdog = watchdog_for(aws, queue, clock, monkeypatch)
    trainer.handle(queue.events.popleft())
    outcomes = []
    for _ in range(run_control.MAX_RESUMES):
        queue.events.clear()  # every re-sent event waits in a throttled queue
        clock.advance(STALL_SECONDS + 1)
        outcomes.append(watchdog.handle({})["stalled"][0]["outcome"])
    queue.events.clear()
    clock.advance(STALL_SECONDS + 1)
    outcomes.append(watchdog.handle({})["stalled"][0]["outcome"])
    assert outcomes == ["resumed"] * run_control.MAX_RESUMES + ["waiting"] and not queue.events
    clock.advance(EVENT_AGE_SECONDS + TIMEOUT_SECONDS - 2 * STALL_SECONDS)
    assert watchdog.handle({})["stalled"][0]["outcome"] == "waiting"  # the last re-send may still be queued
    clock.advance(2 * STALL_SECONDS)
    assert watchdog.handle({})["stalled"][0]["outcome"] == "failed"
    assert trainer.ports.table.get_run("r1")["reason"].startswith("stalled")
    assert len(aws.messages()) == 1


def test_watchdog_does_not_fail_a_run_whose_step_starts_while_it_judges(aws, monkeypatch):
    queue, clock = QueueInvoker(), FakeClock()
    trainer = launch(aws, queue, clock=clock)
    watchdog = watchdog_for(aws, queue, clock, monkeypatch)
    trainer.handle(queue.events.popleft())
    for _ in range(run_control.MAX_RESUMES):
        clock.advance(STALL_SECONDS + 1)
        watchdog.handle({})
    clock.advance(EVENT_AGE_SECONDS + TIMEOUT_SECONDS + 1)
    judged = watchdog.ports.table.list_runs("running")  # the watchdog reads the run: nothing in flight ...
    trainer.ports.table.mark_started("r1", 2, at=clock())  # ... when a (long throttled) delivery starts step 2
    watchdog.ports.table.list_runs = lambda status: judged
    assert watchdog.handle({})["stalled"][0]["outcome"] == "duplicate"  # the fail is conditional on the heartbeat
    assert trainer.ports.table.get_run("r1")["status"] == "running"


def test_watchdog_resumes_runs_recorded_by_an_earlier_release_and_goes_on_after_a_bad_one(aws, monkeypatch):
    queue, clock = QueueInvoker(), FakeClock()
    trainer = launch(aws, queue, clock=clock)
    launch(aws, queue, run_id="r2", clock=clock)
    queue.events.clear()
    trainer.ports.table._table.update_item(
        Key={"run_id": "r1", "epoch": 0}, UpdateExpression="REMOVE heartbeat_at, committed_at"
    )  # an older record
    watchdog = watchdog_for(aws, queue, clock, monkeypatch)
    clock.advance(STALL_SECONDS + 1)
    assert sorted(s["outcome"] for s in watchdog.handle({})["stalled"]) == ["resumed", "resumed"]


class LostAnswerTable:
    """A run table whose chosen commit is applied but answers as if it had lost (a retried request whose first try
    won)."""

    def __init__(self, table, lose_step):
        self._table, self.lose_step = table, lose_step

    def __getattr__(self, name):
        return getattr(self._table, name)

    def transition(self, run_id, *, seen_step, new_step, fields):
        applied = self._table.transition(run_id, seen_step=seen_step, new_step=new_step, fields=fields)
        return applied and new_step != self.lose_step


@pytest.mark.parametrize("lose_step", [4, 16])  # mid-run, and the finish step
def test_a_commit_whose_answer_is_lost_still_continues_and_notifies(aws, clean, lose_step):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    trainer.ports.table = LostAnswerTable(trainer.ports.table, lose_step)
    outcomes = deliver_all(trainer, queue)
    assert outcomes.count("committed") == 16  # the delivery finds its own lease on the record: the commit was its own
    assert_like_clean(aws, trainer, clean)


def test_a_twin_does_not_publish_a_message_another_delivery_claimed_whatever_its_request_id(aws):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    deliver_all(trainer, queue)
    aws.messages()
    table, clock = trainer.ports.table, trainer.ports.clock
    table._table.update_item(
        Key={"run_id": "r1", "epoch": 0},
        UpdateExpression="SET notified = :no REMOVE notifier, notify_lease",
        ExpressionAttributeValues={":no": False},
    )  # as just after the finish commit
    run = table.get_run("r1")
    lease = clock() + sending.LEASE_SECONDS
    assert table.claim_notification("r1", "request-a/1", now=clock(), until=lease)  # A claims, then crashes ...
    for twin in ("request-a/2", "request-b/1"):  # ... while twins, one with A's request id, arrive
        ending.ensure_notified(trainer.ports, run, claimant=twin)
    assert not aws.messages()
    clock.advance(60)  # Lambda retries A's event a minute later: the lease has expired
    ending.ensure_notified(trainer.ports, run, claimant="request-a/3")
    assert len(aws.messages()) == 1 and table.get_run("r1")["notified"] is True


def test_watchdog_sends_nothing_when_the_run_moved_on_since_it_was_judged_stalled(aws, monkeypatch):
    queue, clock = QueueInvoker(), FakeClock()
    trainer = launch(aws, queue, clock=clock)
    watchdog = watchdog_for(aws, queue, clock, monkeypatch)
    judged = trainer.ports.table.list_runs("running")  # the watchdog's view: step 1 pending
    trainer.handle(queue.events.popleft())  # ... but the chain commits step 1 meanwhile
    queue.events.clear()
    watchdog.ports.table.list_runs = lambda status: judged
    clock.advance(STALL_SECONDS + 1)
    assert watchdog.handle({})["stalled"][0]["outcome"] == "moved on"
    assert not queue.events and trainer.ports.table.get_run("r1").get("resumes", 0) == 0


def test_manual_resumes_of_a_live_run_never_fail_it(aws, clean):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    while trainer.ports.table.get_run("r1")["status"] == "running":
        run_control.resume_run(trainer.ports, "r1")  # a duplicate of the pending step: dropped when it comes
        trainer.handle(queue.events.popleft())
        while len(queue.events) > 1:
            trainer.handle(queue.events.pop())
    assert_like_clean(aws, trainer, clean)
