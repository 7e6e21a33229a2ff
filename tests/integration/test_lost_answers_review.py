"""The review's findings R1-R3 on issue 16's fixes, each reproduced with test_lost_answers.py's `World`: a stop whose
answer was lost while the run stopped, a finish committed by the previous release, and writes that meet a twin's
transaction.

Each test fails on the code before the fix it names.
"""

import pytest
from botocore.exceptions import ClientError

from lnn_cli.cloud.chaos import with_lost_answer
from lnn_core import run_control
from lnn_core.protocol.layout import model_key, staged_model_key
from tests.integration.test_lost_answers import PARAMETERS, World, wrap
from tests.support.deliveries import context, deliver_failing_at


@pytest.fixture
def world(aws):
    return World(aws)


def conflict(operation: str) -> ClientError:
    return ClientError(
        {
            "Error": {
                "Code": "TransactionConflictException",
                "Message": "Operation was rejected because there is an ongoing transaction for the item",
            }
        },
        operation,
    )


# ---- the review's findings (R1-R3) ----------------------------------------------------------------------------


def test_r1_a_stop_whose_answer_was_lost_while_the_run_stopped_is_not_reported_as_refused(world):
    world.launch()
    trainer = world.trainer()
    event = world.run_until(trainer, "backward")
    cli = world.trainer()  # `lnn stop`'s ports

    def lost(call, request):
        if "stop_requested" not in request.get("UpdateExpression", ""):
            return call(**request)
        # applied, its answer lost; before botocore's retry the next step sees the request and stops the run
        return with_lost_answer(call, before_retry=lambda: trainer.handle(event, context()))(**request)

    wrap(cli, "table", "update_item", lost)
    assert run_control.stop_run(cli.ports, "r1") == {"run_id": "r1", "stop_requested": True}
    assert world.record()["status"] == "stopped"


def test_r1_stopping_an_ended_run_names_its_status_now(world):
    world.launch()
    world.drain(world.trainer())
    with pytest.raises(Exception, match="is succeeded, not running"):
        run_control.stop_run(world.trainer().ports, "r1")


def test_r2_a_finish_committed_by_the_previous_release_still_gets_its_message(world):
    """Before this release the finish wrote model.npz itself and nothing was staged: its message is still sent."""
    world.launch()
    finish = world.run_until(world.trainer(), "finish")
    # the finish committed, then its container died before the message
    deliver_failing_at(world.trainer(), "store.copy", finish)
    s3, bucket = world.aws.s3, world.aws.bucket  # what the previous release left
    s3.copy_object(Bucket=bucket, Key=model_key("r1"), CopySource={"Bucket": bucket, "Key": staged_model_key("r1", 2)})
    s3.delete_object(Bucket=bucket, Key=staged_model_key("r1", 2))
    world.trainer().ports.table._table.update_item(
        Key={"run_id": "r1", "epoch": 0}, UpdateExpression="REMOVE message_due, model_staged"
    )
    world.clock.advance(60)
    assert world.trainer().handle(finish, context())["outcome"] == "ignored"
    assert [message["status"] for message in world.messages()] == ["succeeded"]


@pytest.mark.parametrize("fragment", ["#committed = :new", "stop_requested", "SET started_step"])
def test_r3_a_run_record_write_that_meets_a_twins_transaction_is_retried(world, fragment):
    """While an epoch-item transaction checks the run record, DynamoDB answers a plain write of that record with a
    TransactionConflictException, which botocore does not retry: the run table does."""
    world.launch({**PARAMETERS, "granularity": "epoch"})
    event = world.queue.events.popleft()
    trainer = world.trainer()
    conflicts = [1]

    def busy(call, request):
        if fragment in request.get("UpdateExpression", "") and conflicts:
            conflicts.pop()
            raise conflict("UpdateItem")
        return call(**request)

    wrap(trainer, "table", "update_item", busy)
    if fragment == "stop_requested":
        assert run_control.stop_run(trainer.ports, "r1") == {"run_id": "r1", "stop_requested": True}
    else:
        assert trainer.handle(event, context())["outcome"] == "committed"
    assert not conflicts


def test_r3_an_epoch_item_transaction_canceled_by_a_conflict_is_retried(world):
    world.launch({**PARAMETERS, "granularity": "epoch"})
    event = world.queue.events.popleft()
    trainer = world.trainer()
    conflicts = [1]

    def busy(call, request):
        if conflicts:
            conflicts.pop()
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                    "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}],
                },
                "TransactWriteItems",
            )
        return call(**request)

    wrap(trainer, "table", "transact_write_items", busy)
    assert trainer.handle(event, context())["outcome"] == "committed"
    assert [item["epoch"] for item in trainer.ports.table.list_epochs("r1")] == [1]
