"""The SNS message at the end of a sweep: sent once by whoever finds the sweep done first, never while a trial runs
or waits; a claim whose claimant died is taken over after the lease, by one taker only."""

import json

import boto3
import pytest
from moto import mock_aws

from lnn_cli.sweeps.spec import parse_spec
from lnn_core.aws.ports import Ports, S3ObjectStore
from lnn_core.aws.sdk import IoCounter
from lnn_core.sweep.message import LEASE_SECONDS, message_key, notify_if_done
from lnn_core.sweep.record import SweepRecord
from lnn_core.sweep.results import trial_rows

BUCKET = "sweep-bucket"
BASE = {
    "epochs": 3,
    "learning_rate": 0.01,
    "neurons": [4, 1],
    "activations": ["relu", "sigmoid"],
    "validation_split": 0.2,
}


class Inbox:
    def __init__(self):
        self.sent = []

    def publish(self, **message):
        self.sent.append(message)


@pytest.fixture
def s3(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def ports(s3, inbox, clock=lambda: 1000.0):
    """What the message needs: the bucket, the topic, a clock."""
    counter = IoCounter()
    return Ports(
        table=None, notifier=inbox, invoker=None, counter=counter, store=S3ObjectStore(s3, BUCKET, counter), clock=clock
    )


def sweep(statuses):
    spec = parse_spec({"base": BASE, "seeds": list(range(len(statuses)))}, source="s")
    record = SweepRecord.new("sw", spec, spec.generate("sw"), b"", None)
    runs = {}
    for index, (run_id, status) in enumerate(zip(record.run_ids, statuses)):
        if status != "queued":
            runs[run_id] = {
                "run_id": run_id,
                "status": status,
                "created_epoch_seconds": record.created_epoch_seconds,
                "final": {
                    "cost": 0.1 * (index + 1),
                    "validation_accuracy": 0.5 + 0.1 * index,
                    "test_accuracy": 0.7,
                    "model_key": "m",
                    "epochs": 3,
                    "seconds": 2.0,
                },
            }
    return record, trial_rows(record, runs, prices=None, local=True)


def test_one_message_whoever_finds_the_sweep_done(s3):
    record, rows = sweep(["succeeded", "succeeded", "failed"])
    inbox = Inbox()
    assert notify_if_done(ports(s3, inbox), record, rows)
    assert not notify_if_done(ports(s3, inbox), record, rows)  # a second reader, a later status: nothing
    assert len(inbox.sent) == 1
    message = inbox.sent[0]
    assert message["body"]["best"]["run_id"] == "sw-t002"  # the highest validation accuracy with a model
    assert message["message_id"] == "lnn-sweep-sw" and message["status"] == "sweep_done"
    assert message["subject"].startswith("LNN sweep sw done: 3 trials")
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=message_key("sw"))["Body"].read())["sent"] is True


@pytest.mark.parametrize("statuses", [["succeeded", "running"], ["succeeded", "queued"]])
def test_no_message_while_a_trial_runs_or_waits(s3, statuses):
    record, rows = sweep(statuses)
    inbox = Inbox()
    assert not notify_if_done(ports(s3, inbox), record, rows)
    assert inbox.sent == []


def test_a_stale_unsent_claim_is_taken_over_once(s3):
    record, rows = sweep(["succeeded"])
    s3.put_object(Bucket=BUCKET, Key=message_key("sw"), Body=json.dumps({"claimed_at": 1000.0, "sent": False}).encode())
    inbox = Inbox()
    assert not notify_if_done(ports(s3, inbox, lambda: 1000.0 + LEASE_SECONDS / 2), record, rows)  # alive
    assert notify_if_done(ports(s3, inbox, lambda: 1000.0 + LEASE_SECONDS + 1), record, rows)
    assert not notify_if_done(ports(s3, inbox, lambda: 1000.0 + 3 * LEASE_SECONDS), record, rows)  # sent
    assert len(inbox.sent) == 1
