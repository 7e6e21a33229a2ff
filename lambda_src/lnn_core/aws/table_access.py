"""Access to the run table shared by its items' operations (`run_table.RunTable` is composed of them): the table and
the shared `IoCounter`, a consistent read of one item, and the conditional update that is the exactly-once protocol's
commit point and lease, each write retried past the transaction conflicts that botocore does not retry.
"""

import time
from typing import Any

from botocore.exceptions import ClientError

from lnn_core.aws.codec import from_dynamo, to_dynamo
from lnn_core.aws.sdk import IoCounter

RUN_RECORD_EPOCH = 0  # the run record shares the results table, at epoch 0
# A write of the run record meets a TransactionConflict while a twin's epoch-item transaction checks that record;
# botocore does not retry it. The conflict lasts one transaction: a few short retries outlast it.
CONFLICT_BACKOFF_SECONDS = (0.02, 0.05, 0.1, 0.2, 0.4)


class TableAccess:
    """The results table and its request counter, with the reads and writes every item's operations share."""

    def __init__(self, table, counter: IoCounter):
        self._table, self._counter = table, counter
        self.name = table.name

    def _get_item(self, partition: str, epoch: int) -> dict[str, Any] | None:
        self._counter.count("dynamodb")
        item = self._table.get_item(Key={"run_id": partition, "epoch": epoch}, ConsistentRead=True).get("Item")
        return from_dynamo(item) if item else None

    def _count_write(self) -> None:
        self._counter.count("dynamodb", dynamodb_writes=1)

    def _conditional_update(
        self,
        run_id,
        update,
        condition,
        values,
        *,
        status: bool = False,
        names: dict[str, str] | None = None,
        epoch: int = RUN_RECORD_EPOCH,
    ) -> bool:
        names = names or ({"#status": "status"} if status else None)
        self._count_write()
        try:
            outlasting_conflicts(
                self._table.update_item,
                Key={"run_id": run_id, "epoch": epoch},
                UpdateExpression=update,
                ConditionExpression=f"attribute_exists(run_id) AND ({condition})",
                ExpressionAttributeValues=to_dynamo(values),
                **({"ExpressionAttributeNames": names} if names else {}),
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True


def condition_failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


def outlasting_conflicts(write, **request):
    """`write(**request)`, retried while it meets another transaction on the same item: an UpdateItem or PutItem
    answered TransactionConflictException, a transaction canceled for a TransactionConflict."""
    for pause in (*CONFLICT_BACKOFF_SECONDS, None):
        try:
            return write(**request)
        except ClientError as error:
            if pause is None or not _conflicted(error):
                raise
        time.sleep(pause)


def _conflicted(error: ClientError) -> bool:
    code = error.response["Error"]["Code"]
    if code == "TransactionConflictException":
        return True
    reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons") or []]
    return (
        code == "TransactionCanceledException"
        and "TransactionConflict" in reasons
        and "ConditionalCheckFailed" not in reasons
    )
