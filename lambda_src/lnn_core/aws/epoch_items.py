"""The epoch items: an epoch's figures at its epoch in the run's partition, its weights at its epoch in a partition of
their own (`weights_partition`), so that reading figures never walks or pages through weights. A step writes its
epochs' items in transactions that hold only while the step is uncommitted; readers see the committed epochs alone.
"""

from typing import Any

from botocore.exceptions import ClientError

from lnn_core.aws.codec import from_dynamo, item_write_units, to_dynamo
from lnn_core.aws.table_access import RUN_RECORD_EPOCH, TableAccess, outlasting_conflicts
from lnn_core.ml.parameters import MAX_EPOCHS

# A run's weights items are in partition `<run_id>#weights`: no run's own partition, as no run id has a "#"
# (config.RUN_ID_PATTERN).
WEIGHTS_PARTITION_SUFFIX = "#weights"
# A TransactWriteItems takes at most 100 actions and 4 MB: one condition on the run record and up to 99 items.
ITEMS_PER_WRITE = 99
WRITE_BYTES_LIMIT = 3_500_000  # by `item_write_units`' upper bound, under the 4 MB a transaction may carry
# What `lnn results`, `status`, `runs`, `serve` and results.json show of an epoch item (results.epoch_item writes
# them; `evaluation` the test figures): not the weights and biases, most of an item's bytes.
EPOCH_FIGURES = (
    "epoch",
    "cost",
    "learning_rate",
    "started_at",
    "finished_at",
    "test_cost",
    "test_accuracy",
    "test_rmse",
    "validation_cost",
    "validation_accuracy",
    "validation_rmse",
)
# What of an epoch item is stored in its weights item (results.epoch_item: lists, or norms and a checkpoint's key).
EPOCH_WEIGHTS = ("weights", "bias", "weight_norms", "checkpoint_key")


class EpochItemOperations(TableAccess):
    """The run table's operations on the epoch items of a run."""

    def put_epoch_items(self, run_id: str, items: list[dict[str, Any]], *, step: int) -> bool:
        """Write the epoch items of `step` (each as its two stored items, `stored_items`), each transaction only while
        the step is uncommitted and the run running: no item changes once its step committed (a late twin's
        timestamps never replace the winner's). Their content is otherwise a pure function of the step. False when
        the step was committed, or the run ended, before every item was written (the SDK's retry of an applied
        transaction is idempotent by its token)."""
        client = self._table.meta.client  # a resource's client: it serializes Python values itself
        check = {
            "ConditionCheck": {
                "TableName": self.name,
                "Key": {"run_id": run_id, "epoch": RUN_RECORD_EPOCH},
                "ConditionExpression": "committed_step = :previous AND #status = :running",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":previous": step - 1, ":running": "running"},
            }
        }
        partitions = (run_id, weights_partition(run_id))  # of an epoch's figures item, of its weights item
        stored = [(partition, part) for item in items for partition, part in zip(partitions, stored_items(item))]
        for chunk in _write_chunks(stored):
            # converted chunk by chunk: Decimals take far more memory than floats
            puts = [
                {"Put": {"TableName": self.name, "Item": to_dynamo({**item, "run_id": partition})}}
                for partition, item in chunk
            ]
            # a read of the run record (the check) and the items' write units, not a write of the record
            self._counter.count("dynamodb", dynamodb_item_units=sum(item_write_units(item) for _, item in chunk))
            try:
                outlasting_conflicts(client.transact_write_items, TransactItems=[check, *puts])
            except ClientError as error:
                if error.response["Error"]["Code"] == "TransactionCanceledException" and _check_failed(error):
                    return False
                raise
        return True

    def list_epochs(
        self, run_id: str, *, through: int | None = None, after: int = 0, attributes: tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        """The run's epochs' figures items (no weights), epoch 1 first; with `through`, only epochs up to it; with
        `after`, only the epochs after it; with `attributes`, only those attributes of each item."""
        return self._query(run_id, after + 1, MAX_EPOCHS if through is None else through, attributes)

    def epoch_items(self, run_id: str, *, through: int | None = None) -> list[dict[str, Any]]:
        """Every epoch item the run's steps wrote (committed or not), whole: figures and weights, epoch 1 first;
        with `through`, only epochs up to it. Two queries, one per partition."""
        last = MAX_EPOCHS if through is None else through
        weights = {
            item.pop("epoch"): item
            for item in self._query(weights_partition(run_id), 1, last, ("epoch", *EPOCH_WEIGHTS))
        }
        return [{**item, **weights.get(item["epoch"], {})} for item in self.list_epochs(run_id, through=last)]

    def committed_epochs(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        """The whole items of the epochs the run committed. An item is written before its step's commit, so a stopped
        run or a losing twin can leave items of later epochs; readers show only these."""
        return self.epoch_items(run["run_id"], through=run["progress_epoch"]) if run.get("progress_epoch") else []

    def epoch_figures(
        self, run: dict[str, Any], *, after: int = 0, attributes: tuple[str, ...] = EPOCH_FIGURES
    ) -> list[dict[str, Any]]:
        """What readers show of the committed epochs after `after`: their `EPOCH_FIGURES`, or the `attributes` a
        reader shows of them, from the figures items alone (one query of small items; an emulator's answer takes
        time by the attribute). Like `committed_epochs`, nothing beyond the run's `progress_epoch`."""
        last = run.get("progress_epoch") or 0
        if last <= after:
            return []
        return self.list_epochs(run["run_id"], through=last, after=after, attributes=attributes)

    def epochs_at(self, run: dict[str, Any], epochs: tuple[int, ...]) -> list[dict[str, Any]]:
        """The figures items of those of `epochs` the run committed, one GetItem each (a sweep's halving reads its
        few rungs, not every epoch)."""
        items = (self._get_item(run["run_id"], epoch) for epoch in epochs if epoch <= (run.get("progress_epoch") or 0))
        return [item for item in items if item is not None]

    def committed_epoch(self, run: dict[str, Any]) -> dict[str, Any] | None:
        """The whole item (figures and weights) of the run's last committed epoch; None before its first."""
        if not run.get("progress_epoch"):
            return None
        figures, weights = (
            self._get_item(partition, run["progress_epoch"])
            for partition in (run["run_id"], weights_partition(run["run_id"]))
        )
        if figures is None:
            return None
        return {**figures, **{name: value for name, value in (weights or {}).items() if name in EPOCH_WEIGHTS}}

    def _query(self, partition: str, first: int, last: int, attributes: tuple[str, ...] | None) -> list[dict[str, Any]]:
        """The items of `partition` (a run's, or its weights') with keys `first` to `last`; with `attributes`, only
        those attributes (a projection: DynamoDB reads, and pages by, the whole items, but sends only these)."""
        items, start = [], {}
        projection = {}
        if attributes:
            names = {f"#a{index}": name for index, name in enumerate(attributes)}
            projection = {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}
        while True:
            self._counter.count("dynamodb")
            page = self._table.query(
                KeyConditionExpression="run_id = :run AND epoch BETWEEN :first AND :last",
                ExpressionAttributeValues={":run": partition, ":first": first, ":last": last},
                ConsistentRead=True,
                **projection,
                **start,
            )
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return [from_dynamo(item) for item in items]
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def weights_partition(run_id: str) -> str:
    """The partition key of a run's weights items: apart from its figures, so that a query of the figures reads,
    and an emulator walks, none of the weights (DynamoDB reads only the keys asked for; moto the whole partition)."""
    return run_id + WEIGHTS_PARTITION_SUFFIX


def stored_items(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The two items an epoch item (`results.epoch_item`) is stored as, both at its epoch: its figures in the run's
    partition, its `EPOCH_WEIGHTS` in the run's `weights_partition`. Both depend on the item alone."""
    figures = {name: value for name, value in item.items() if name not in EPOCH_WEIGHTS}
    weights = {name: item[name] for name in EPOCH_WEIGHTS if name in item}
    return [figures, {"epoch": item["epoch"], **weights}]


def epoch_write_units(item: dict[str, Any]) -> list[int]:
    """The write units of each item an epoch item is stored as (`stored_items`)."""
    return [item_write_units(stored) for stored in stored_items(item)]


def _check_failed(error: ClientError) -> bool:
    """Whether a canceled transaction's first action (the condition on the run record) failed."""
    reasons = error.response.get("CancellationReasons") or []
    if reasons:
        return reasons[0].get("Code") == "ConditionalCheckFailed"
    return "ConditionalCheckFailed" in str(error)


def _write_chunks(items: list[tuple[str, dict[str, Any]]]):
    """`items` ((partition, item) pairs) in chunks that one transaction takes: at most `ITEMS_PER_WRITE` and
    `WRITE_BYTES_LIMIT` bytes."""
    chunk, size = [], 0
    for partition, item in items:
        item_bytes = item_write_units(item) * 1024
        if chunk and (len(chunk) == ITEMS_PER_WRITE or size + item_bytes > WRITE_BYTES_LIMIT):
            yield chunk
            chunk, size = [], 0
        chunk.append((partition, item))
        size += item_bytes
    if chunk:
        yield chunk
