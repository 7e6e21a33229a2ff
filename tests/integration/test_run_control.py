"""Exactly-once under duplicates and crashes, stop, resume after a lost invocation, the watchdog and the step bound."""

import io
import json

import numpy as np
import pytest

from lnn_core import control
from lnn_core.handlers import build_launcher, build_trainer, build_watchdog
from tests.conftest import QueueInvoker, blobs

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


def launch(aws, queue, run_id="r1", parameters=PARAMETERS):
    X, y = blobs()
    aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
    assert build_launcher(session=aws.session, invoker=queue).handle({"run_id": run_id, "parameters": parameters})["status"] == "running"
    return build_trainer(session=aws.session, invoker=queue)


def deliver_all(trainer, queue, *, retries=2):
    """Deliver queued events in order, retrying an event that raised, as Lambda's async retries do."""
    outcomes = []
    while queue.events:
        event = queue.events.popleft()
        for attempt in range(retries + 1):
            try:
                outcomes.append(trainer.handle(event)["outcome"])
                break
            except ConnectionError:
                outcomes.append("crashed")
    return outcomes


def final_model(aws, run_id="r1"):
    with np.load(io.BytesIO(aws.s3.get_object(Bucket=aws.bucket, Key=f"runs/{run_id}/model.npz")["Body"].read())) as npz:
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
    control.stop_run(trainer.ports, "r1")
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
    assert control.resume_run(trainer.ports, "r1")["outcome"] == "resumed"
    deliver_all(trainer, queue)
    assert_like_clean(aws, trainer, clean)


def test_watchdog_resumes_stalled_runs_and_gives_up_after_repeated_stalls(aws, clean, monkeypatch):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    trainer.handle(queue.events.popleft())
    queue.events.clear()
    monkeypatch.setenv("LNN_STALL_SECONDS", "-1")  # everything counts as stalled
    watchdog = build_watchdog(session=aws.session, invoker=queue)
    assert [s["outcome"] for s in watchdog.handle({})["stalled"]] == ["resumed"]
    deliver_all(trainer, queue)
    assert_like_clean(aws, trainer, clean)
    assert watchdog.handle({})["stalled"] == []  # finished runs are left alone

    trainer = launch(aws, queue, run_id="r9")
    trainer.handle(queue.events.popleft())
    for _ in range(control.MAX_RESUMES):
        queue.events.clear()
        watchdog.handle({})
    queue.events.clear()
    assert watchdog.handle({})["stalled"][0]["outcome"] == "failed"
    assert trainer.ports.table.get_run("r9")["reason"].startswith("stalled")


def test_step_bound_stops_a_runaway_run(aws):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    table = trainer.ports.table
    table._table.update_item(Key={"run_id": "r1", "epoch": 0}, UpdateExpression="SET step_bound = :b", ExpressionAttributeValues={":b": 2})
    outcomes = deliver_all(trainer, queue)
    assert outcomes == ["committed", "committed", "failed"]
    assert "exceeds the run's bound" in table.get_run("r1")["reason"]
    assert len(aws.messages()) == 1


class LostAnswerTable:
    """A run table whose chosen commit is applied but answers as if it had lost (a retried request whose first try won)."""

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
    assert outcomes.count("resent") == (1 if lose_step < 16 else 0)
    assert_like_clean(aws, trainer, clean)


def test_a_twin_does_not_publish_a_message_another_delivery_claimed(aws):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    deliver_all(trainer, queue)
    aws.messages()
    table = trainer.ports.table
    table._table.update_item(Key={"run_id": "r1", "epoch": 0}, UpdateExpression="SET notified = :no REMOVE notifier",
                             ExpressionAttributeValues={":no": False})  # as just after the finish commit
    run = table.get_run("r1")
    assert table.claim_notification("r1", "request-a")  # delivery A claims, then is still publishing ...
    control.ensure_notified(trainer.ports, run, claimant="request-b")  # ... when its twin B arrives
    assert not aws.messages()
    control.ensure_notified(trainer.ports, run, claimant="request-a")  # A (or A's retry) publishes
    assert len(aws.messages()) == 1 and table.get_run("r1")["notified"] is True


def test_resume_sends_nothing_when_the_run_moved_on_since_it_was_judged_stalled(aws):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    judged = trainer.ports.table.get_run("r1")  # the watchdog's view: step 1 pending
    trainer.handle(queue.events.popleft())  # ... but the chain commits step 1 meanwhile
    assert control.resume_run(trainer.ports, "r1", seen=judged)["outcome"] == "moved on"
    assert len(queue.events) == 1 and trainer.ports.table.get_run("r1").get("resumes", 0) == 0


def test_manual_resumes_of_a_live_run_never_fail_it(aws, clean):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    while trainer.ports.table.get_run("r1")["status"] == "running":
        control.resume_run(trainer.ports, "r1")  # a duplicate of the pending step: dropped when it comes
        trainer.handle(queue.events.popleft())
        while len(queue.events) > 1:
            trainer.handle(queue.events.pop())
    assert_like_clean(aws, trainer, clean)


class Context:
    def __init__(self, remaining_seconds):
        self.aws_request_id, self.remaining = "request-1", remaining_seconds

    def get_remaining_time_in_millis(self):
        return int(self.remaining * 1000)


def test_auto_steps_are_bounded_in_epochs_and_leave_time_to_commit(aws):
    from lnn_core import engine

    queue = QueueInvoker()
    tiny = {**PARAMETERS, "epochs": engine.AUTO_MAX_EPOCHS_PER_STEP + 10, "granularity": "auto"}
    trainer = launch(aws, queue, parameters=tiny)
    trainer.handle(queue.events.popleft(), Context(remaining_seconds=3600))
    assert queue.events[0]["epoch"] == engine.AUTO_MAX_EPOCHS_PER_STEP + 1  # the cap, not the clock, ended the step
    event = queue.events.popleft()
    budget = engine.AUTO_SAFETY_SECONDS + 0.5
    started = __import__("time").monotonic()
    trainer.handle(event, Context(remaining_seconds=budget))
    assert __import__("time").monotonic() - started < budget  # computed and committed within the invocation
    assert queue.events[0]["epoch"] > event["epoch"]
