"""Every delivery adds what it used to its run record (`usage_*`): duplicates, crashes and refused launches too,
and nothing else moves (the exactly-once protocol never reads those attributes)."""

import copy
from types import SimpleNamespace

import pytest

from lnn_core.aws import pricing
from lnn_core.aws.usage import USAGE_PREFIX
from lnn_core.handlers import build_launcher, build_trainer
from tests.conftest import QueueInvoker, blobs

PARAMETERS = {
    "epochs": 3,
    "learning_rate": 0.5,
    "neurons": [3, 1],
    "activations": ["tanh", "sigmoid"],
    "seed": 1,
    "granularity": "epoch",
}
CONTEXT = SimpleNamespace(aws_request_id="req", memory_limit_in_mb=1769, get_remaining_time_in_millis=lambda: 900_000)


def protocol(run):
    return {key: value for key, value in run.items() if not key.startswith(USAGE_PREFIX)}


def usage(run):
    return {key[len(USAGE_PREFIX) :]: value for key, value in run.items() if key.startswith(USAGE_PREFIX)}


@pytest.fixture
def launched(aws):
    X, y = blobs()
    queue = QueueInvoker()
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    launcher = build_launcher(session=aws.session, invoker=queue)
    assert launcher.handle({"run_id": "r1", "parameters": PARAMETERS}, CONTEXT)["status"] == "running"
    return aws, launcher, build_trainer(session=aws.session, invoker=queue), queue


def test_the_launch_and_every_step_add_their_usage(launched):
    aws, _, trainer, queue = launched
    run = trainer.ports.table.get_run("r1")
    first = usage(run)
    assert first["deliveries"] == 1 and first["mb_ms"] % 1769 == 0 and first["mb_ms"] > 0
    assert first["s3_reads"] >= 2 and first["s3_bytes"] > 0  # HEAD and GET of the data
    assert first["dynamodb_writes"] >= 2  # the record, its ADD (the tests' QueueInvoker counts no invoke)
    deliveries = 1
    while queue.events:
        trainer.handle(queue.events.popleft(), CONTEXT)
        deliveries += 1
        now = usage(trainer.ports.table.get_run("r1"))
        assert now["deliveries"] == deliveries and now["mb_ms"] > first["mb_ms"]
        assert now["requests_dynamodb"] > first["requests_dynamodb"] and now["dynamodb_item_units"] >= 0
        first = now
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded" and first["requests_sns"] == 1
    assert first["dynamodb_item_units"] == 6  # 3 epochs, each a figures item and a weights item of 1 unit
    cost = pricing.run_cost(run)
    assert cost["deliveries"] == deliveries and cost["dollars"] > 0 and cost["requests"]["sns"] == 1


def test_a_duplicate_is_paid_for_and_changes_nothing_else(launched):
    _, _, trainer, queue = launched
    first = queue.events.popleft()
    trainer.handle(copy.deepcopy(first), CONTEXT)
    trainer.handle(queue.events.popleft(), CONTEXT)  # step 2: step 1 is now two behind
    before = trainer.ports.table.get_run("r1")
    assert trainer.handle(first, CONTEXT)["outcome"] == "duplicate"
    after = trainer.ports.table.get_run("r1")
    assert protocol(after) == protocol(before)
    assert usage(after)["deliveries"] == usage(before)["deliveries"] + 1
    assert usage(after)["mb_ms"] - usage(before)["mb_ms"] >= 1769  # at least 1 ms at 1,769 MB
    assert usage(after)["requests_dynamodb"] - usage(before)["requests_dynamodb"] == 2  # its read, its ADD


def test_a_crashed_delivery_is_paid_for(launched, monkeypatch):
    _, _, trainer, queue = launched
    before = usage(trainer.ports.table.get_run("r1"))

    def crash(*args, **kwargs):
        raise MemoryError("the step died")

    monkeypatch.setattr(trainer.steps, "execute", crash)
    with pytest.raises(MemoryError):
        trainer.handle(queue.events[0], CONTEXT)
    after = usage(trainer.ports.table.get_run("r1"))
    assert after["deliveries"] == before["deliveries"] + 1 and after["mb_ms"] > before["mb_ms"]


def test_usage_never_creates_a_record(launched):
    aws, launcher, trainer, _ = launched
    trainer.handle({"run_id": "ghost", "step": 1, "state": "start", "epoch": 1, "batch": 0, "layer": 0}, CONTEXT)
    assert launcher.handle({"run_id": "ghost2", "parameters": {"epochs": -1}}, CONTEXT)["status"] == "rejected"
    assert trainer.ports.table.get_run("ghost") is None and trainer.ports.table.get_run("ghost2") is None
    # a repeated launch of an existing run is a delivery of that run: paid for
    before = usage(trainer.ports.table.get_run("r1"))["deliveries"]
    launcher.handle({"run_id": "r1", "parameters": PARAMETERS}, CONTEXT)
    assert usage(trainer.ports.table.get_run("r1"))["deliveries"] == before + 1


def test_a_failed_add_is_logged_not_raised(launched, monkeypatch):
    from botocore.exceptions import ClientError

    _, _, trainer, queue = launched

    def refuse(*args, **kwargs):
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem"
        )

    monkeypatch.setattr(trainer.ports.table, "add_usage", refuse)
    assert trainer.handle(queue.events.popleft(), CONTEXT)["outcome"] == "committed"  # the step's work stands
