"""The stack drives a sweep to its end with no client reading after the start (moto's CloudFormation of the
synthesized template, the local runtime): the watchdog's scheduled pass starts the trials that fit, each trial's end
kicks the watchdog, which starts the next queued trial and, after the last, sends the sweep's one message; duplicate
kicks and ticks start nothing twice and send nothing twice; a kick whose answer is lost is harmless. (The kick and
the start marks, on the function-scoped `aws` backend, are in test_sweep_starts.py.)"""

import json

import pytest

from lnn_cli.cloud.local import local_runtime
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.sweep import results
from lnn_core.sweep.record import SweepRecord, active_key
from tests.integration.conftest import dataset
from tests.support.sweeps import SWEEP_TRIAL, record_sweep

BASE = {"epochs": 3, **SWEEP_TRIAL, "validation_split": 0.25}
TICK = {"source": "aws.events", "detail-type": "Scheduled Event"}  # the watchdog's schedule


class Inbox:
    """The stack's topic, read through an SQS subscription: the sweep messages published so far."""

    def __init__(self, session, topic_arn):
        self.sqs = session.client("sqs")
        self.url = self.sqs.create_queue(QueueName="sweep-inbox")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        session.client("sns").subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
        )
        self.sweep_messages: list[dict] = []

    def read(self) -> list[dict]:
        while batch := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                body = json.loads(message["Body"])
                if body.get("message_id", "").startswith("lnn-sweep-"):
                    self.sweep_messages.append(body)
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return self.sweep_messages


@pytest.fixture(scope="module")
def inbox(stack):
    session, outputs = stack
    return Inbox(session, outputs.topic_arn)


def start(stack, sweep_id: str, seeds: list[int], parallel: int) -> SweepRecord:
    """What `lnn sweep start` leaves behind (its one pass is the tick's)."""
    session, outputs = stack
    data, _, _ = dataset(m=40)
    return record_sweep(session.client("s3"), outputs.bucket, sweep_id, {"base": BASE, "seeds": seeds}, data, parallel)


def active(stack, sweep_id: str) -> bool:
    session, outputs = stack
    listed = session.client("s3").list_objects_v2(Bucket=outputs.bucket, Prefix=active_key(sweep_id))
    return bool(listed.get("Contents"))


def test_ticks_and_kicks_alone_run_every_trial_within_the_limit_and_send_one_message(stack, inbox):
    session, outputs = stack
    record = start(stack, "auto", [1, 2, 3, 4, 5], parallel=2)
    table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
    at_once = []

    def watch(_delivery):
        at_once.append(sum(1 for run in table.list_runs("running") if run["run_id"].startswith("auto-")))

    runtime = local_runtime(session, outputs, on_delivery=watch)
    watchdog = runtime.functions["watchdog"]
    runtime.invoke_async(watchdog, TICK)  # the first scheduled pass after the start: nothing else reads the sweep
    runtime.run()

    runs = {run_id: table.get_run(run_id) for run_id in record.run_ids}
    assert all(run and run["status"] == "succeeded" for run in runs.values()), runs
    assert max(at_once) == 2  # --parallel 2: never three at once
    kicks = [d for d in runtime.deliveries if d.role == "watchdog"]
    assert len(kicks) == 1 + 5  # the tick, and one kick per trial's end: no other pass started the queued three
    messages = inbox.read()
    assert [message["sweep_id"] for message in messages] == ["auto"]
    top = results.best(results.trial_rows(record, runs, prices=None, local=True))
    assert messages[0]["best"]["run_id"] == top.trial["run_id"]
    assert messages[0]["counts"] == {"succeeded": 5}
    assert not active(stack, "auto")  # done and announced: off the watchdog's list

    # A duplicate kick, a duplicate tick (the sweep is off the list: a kick still reconciles it): nothing twice.
    launches = sum(1 for d in runtime.deliveries if d.role == "launcher")
    steps = {run_id: run["committed_step"] for run_id, run in runs.items()}
    runtime.invoke_async(watchdog, {"sweep": "auto"})
    runtime.invoke_async(watchdog, {"sweep": "auto"})
    runtime.invoke_async(watchdog, TICK)
    runtime.run()
    assert sum(1 for d in runtime.deliveries if d.role == "launcher") == launches
    assert {run_id: table.get_run(run_id)["committed_step"] for run_id in record.run_ids} == steps
    assert [message["sweep_id"] for message in inbox.read()] == ["auto"]


def test_a_duplicate_kick_while_trials_wait_starts_each_trial_once(stack, inbox):
    """Every trial's end kicks twice and every pass is followed by a tick: each trial is launched once."""
    session, outputs = stack
    record = start(stack, "twice", [1, 2, 3], parallel=1)
    runtime = local_runtime(session, outputs)
    watchdog = runtime.functions["watchdog"]
    for container in runtime.functions["trainer"].containers:
        kick = container.handler.ports.functions["watchdog"]
        container.handler.ports.functions["watchdog"] = Twice(kick, then=lambda: runtime.invoke_async(watchdog, TICK))
    runtime.invoke_async(watchdog, TICK)
    runtime.invoke_async(watchdog, TICK)
    runtime.run()
    table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
    assert all(table.get_run(run_id)["status"] == "succeeded" for run_id in record.run_ids)
    launched = [d.run_id for d in runtime.deliveries if d.role == "launcher"]
    assert sorted(launched) == record.run_ids  # one launch each, though every pass came several times
    assert [message["sweep_id"] for message in inbox.read()].count("twice") == 1


def test_a_kick_whose_answer_is_lost_is_harmless(stack, inbox):
    """The kick reaches the watchdog but the trainer gets an error: the trial ends normally, its message once."""
    session, outputs = stack
    record = start(stack, "lost", [1, 2], parallel=1)
    runtime = local_runtime(session, outputs)
    for container in runtime.functions["trainer"].containers:
        container.handler.ports.functions["watchdog"] = LostAnswer(container.handler.ports.functions["watchdog"])
    runtime.invoke_async(runtime.functions["watchdog"], TICK)
    runtime.run()
    table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
    runs = [table.get_run(run_id) for run_id in record.run_ids]
    assert all(run["status"] == "succeeded" and run["notified"] for run in runs)
    assert [message["sweep_id"] for message in inbox.read()].count("lost") == 1
    assert not active(stack, "lost")


class Twice:
    """A kick delivered twice, then `then()`."""

    def __init__(self, kick, *, then):
        self.kick, self.then = kick, then

    def invoke_async(self, payload):
        self.kick.invoke_async(payload)
        self.kick.invoke_async(payload)
        self.then()


class LostAnswer:
    """The invoke is applied, but its answer is lost: the caller gets an error."""

    def __init__(self, kick):
        self.kick = kick

    def invoke_async(self, payload):
        self.kick.invoke_async(payload)
        raise ConnectionError("the answer of the invoke was lost")
