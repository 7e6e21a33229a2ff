"""The run table (DynamoDB): the run record at epoch 0, an epoch's figures at its epoch, a barrier item per round at
a negative key, all in the run's partition (its id); an epoch's weights at its epoch in a partition of their own
(`weights_partition`), so that reading figures never walks or pages through weights.

Its conditional writes are the exactly-once protocol's commit points and leases: of all deliveries of a step exactly
one commits (`transition`), and a re-send, the run's message and a round's reduce each go to one claimant at a time.
Like the other adapters (ports.py) it counts its requests in the shared `IoCounter`.
"""

import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lnn_core.aws.codec import from_dynamo, item_write_units, to_dynamo
from lnn_core.aws.sdk import IoCounter, now
from lnn_core.ml.parameters import MAX_EPOCHS

# A sparse, keys-only index of the run records (only they have `status`): the watchdog finds running runs
# without scanning the epoch items, and a step's updates of other attributes cost the index nothing. The stack
# creates the index by this name (lnn_stack imports it from here); `RunTable.run_ids` reads it.
RUNS_BY_STATUS_INDEX = "runs-by-status"


# Sparse as well: only an ended run whose message is not yet recorded as sent carries `message_due`, so the
# watchdog finds the messages still owed (a claimant that died, a retry that came inside the lease) without a scan.
RUNS_AWAITING_MESSAGE_INDEX = "runs-awaiting-message"


MESSAGE_DUE = "message_due"


RUN_RECORD_EPOCH = 0  # the run record shares the results table, at epoch 0
# A run's weights items are in partition `<run_id>#weights`: no run's own partition, as no run id has a "#"
# (config.RUN_ID_PATTERN).
WEIGHTS_PARTITION_SUFFIX = "#weights"
# A TransactWriteItems takes at most 100 actions and 4 MB: one condition on the run record and up to 99 items.
ITEMS_PER_WRITE = 99
WRITE_BYTES_LIMIT = 3_500_000  # by `item_write_units`' upper bound, under the 4 MB a transaction may carry
MESSAGE_DUE_VALUE = "due"  # the one value of `MESSAGE_DUE`: the index needs a key, the sweep needs only presence
# A write of the run record meets a TransactionConflict while a twin's epoch-item transaction checks that record;
# botocore does not retry it. The conflict lasts one transaction: a few short retries outlast it.
CONFLICT_BACKOFF_SECONDS = (0.02, 0.05, 0.1, 0.2, 0.4)
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


class RunExists(Exception):
    """A run with this id was already created."""


class RunTable:
    """The results table: the run record at epoch 0, two items per epoch (figures; weights in the run's weights
    partition), barriers below 0."""

    def __init__(self, table, counter: IoCounter):
        self._table, self._counter = table, counter
        self.name = table.name

    def create_run(self, run_id: str, record: dict[str, Any], *, token: str) -> None:
        """Create the run record once; a second create (a duplicate launch) raises `RunExists`. `token` is this
        launch's own: when the SDK retries a create whose answer was lost, the record it finds is ours, not a twin's."""
        self._count_write()
        item = to_dynamo({**record, "run_id": run_id, "epoch": RUN_RECORD_EPOCH, "launch_token": token})
        try:
            _outlasting_conflicts(self._table.put_item, Item=item, ConditionExpression="attribute_not_exists(run_id)")
        except ClientError as error:
            if not _condition_failed(error):
                raise
            existing = self.get_run(run_id)
            if existing is None or existing.get("launch_token") != token:
                raise RunExists(run_id) from error

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        return self._get_item(run_id, RUN_RECORD_EPOCH)

    def transition(
        self,
        run_id: str,
        *,
        seen_step: int,
        new_step: int,
        fields: dict[str, Any],
        seen: dict[str, Any] | None = None,
        stop_token: str | None = None,
    ) -> bool:
        """Atomically move a running run from `seen_step` to `new_step`, setting `fields` and counting one invocation.

        This conditional write is the commit point of a step: of all deliveries of a step, exactly one wins.
        With `seen` (a record the caller judged), also only while its heartbeat is unchanged. With `stop_token` (a
        stop acting on the request it read), only while that request stands: a late twin of a stop that `lnn resume`
        since continued does not stop the run again. Returns False when the run had moved on (or ended, or showed
        life) already.
        """
        names = {"#status": "status", "#committed": "committed_step", "#invocations": "invocations"}
        values = {":seen": seen_step, ":new": new_step, ":running": "running", ":one": 1, ":now": now()}
        condition = "#committed = :seen AND #status = :running"
        if seen is not None:
            heartbeat, heartbeat_values = _heartbeat_condition(seen)
            condition, values = f"{condition} AND {heartbeat}", {**values, **heartbeat_values}
        if stop_token is not None:
            condition += " AND stop_requested = :stop AND stop_token = :stop_token"
            values |= {":stop": True, ":stop_token": stop_token}
        assignments = ["#committed = :new", "updated_at = :now"]
        for index, (name, value) in enumerate(fields.items()):
            names[f"#f{index}"] = name
            values[f":v{index}"] = value
            assignments.append(f"#f{index} = :v{index}")
        return self._conditional_update(
            run_id, "SET " + ", ".join(assignments) + " ADD #invocations :one", condition, values, names=names
        )

    def mark_started(self, run_id: str, step: int, *, at: float) -> bool:
        """Record that a delivery began executing `step` (the run's next): the watchdog's proof of life.
        False when the run moved on or ended, so that a late twin stops before it computes."""
        return self._conditional_update(
            run_id,
            "SET started_step = :step, heartbeat_at = :at",
            "committed_step = :previous AND #status = :running",
            {":step": step, ":at": at, ":previous": step - 1, ":running": "running"},
            status=True,
        )

    def claim_send(self, run_id: str, step: int, *, claimant: str, now: float, until: float) -> bool:
        """Claim the re-send of committed `step`'s successor: only while it is unsent and no live lease of another
        claimant holds it (the SDK's retry of our own applied claim finds our lease, and wins again).

        The commit itself takes this lease for its winner (see `send_lease`); a catch-up (a retry, a loser whose
        commit failed) must win this conditional write before it invokes, so twins never start a second chain.
        """
        return self._conditional_update(
            run_id,
            "SET send_lease = :lease",
            "committed_step = :step AND #status = :running AND invoked_step < :next"
            " AND (attribute_not_exists(send_lease) OR send_lease.#until < :now"
            " OR (send_lease.#by = :claimant AND send_lease.#step = :next))",
            {
                ":step": step,
                ":next": step + 1,
                ":now": now,
                ":running": "running",
                ":claimant": claimant,
                ":lease": send_lease(step + 1, claimant=claimant, until=until),
            },
            names={"#status": "status", "#until": "until", "#by": "by", "#step": "step"},
        )

    def mark_invoked(self, run_id: str, step: int) -> None:
        """Record that the invocation of `step` was sent, so that no catch-up sends it again."""
        self._conditional_update(
            run_id,
            "SET invoked_step = :step",
            "invoked_step < :step",
            {":step": step},
        )

    def claim_notification(self, run_id: str, claimant: str, *, now: float, until: float, ending: int = 0) -> bool:
        """Claim the one message of the run's ending `ending` (its `continuations` when it ended) until `until`: a
        concurrent twin is excluded even when it shares the claimant's request id (`claimant` is unique per
        delivery), while the SDK's retry of our own applied claim finds our name and wins again. A claimant that
        died is replaced by its retry once the lease expired, or by the watchdog's sweep of the runs still owed a
        message. A late claimant of a stop that `lnn resume` continued since finds another ending, and fails."""
        owed, values = _ending_condition(ending)
        return self._conditional_update(
            run_id,
            "SET notifier = :claimant, notify_lease = :until",
            "notified = :no AND (attribute_not_exists(notify_lease) OR notify_lease < :now OR notifier = :claimant)"
            f" AND {owed}",
            {":claimant": claimant, ":no": False, ":now": now, ":until": until, **values},
        )

    def mark_notified(self, run_id: str, *, ending: int = 0) -> bool:
        """Record the message of ending `ending` as sent, and take the run off the watchdog's list of messages owed.
        False when DynamoDB refused even after the SDK's retries (the caller then ends normally, because a retry of
        its event would publish the message again), or when the run was continued since (its next ending's
        message is still owed)."""
        owed, values = _ending_condition(ending)
        try:
            return self._conditional_update(
                run_id,
                f"SET notified = :yes REMOVE {MESSAGE_DUE}",
                f"notified <> :yes AND {owed}",
                {":yes": True, **values},
            )
        except (ClientError, BotoCoreError):
            return False

    def runs_awaiting_message(self) -> list[str]:
        """The ids of ended runs whose message is not recorded as sent, from their sparse index."""
        run_ids, start = [], {}
        while True:
            self._counter.count("dynamodb")
            page = self._table.query(
                IndexName=RUNS_AWAITING_MESSAGE_INDEX,
                KeyConditionExpression=f"{MESSAGE_DUE} = :due",
                ExpressionAttributeValues={":due": MESSAGE_DUE_VALUE},
                **start,
            )
            run_ids += [item["run_id"] for item in page["Items"]]
            if "LastEvaluatedKey" not in page:
                return run_ids
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}

    def request_stop(self, run_id: str, *, token: str) -> bool:
        """Ask a running run to stop at its next step boundary; False when it is not running. `token` is this
        request's own: the SDK's retry of an applied request finds it, even once the run has stopped meanwhile."""
        return self._conditional_update(
            run_id,
            "SET stop_requested = :yes, stop_token = :token",
            "#status = :running OR stop_token = :token",
            {":yes": True, ":running": "running", ":token": token},
            status=True,
        )

    def record_resume(self, run_id: str, *, seen: dict[str, Any], resumes: int, now: float, token: str) -> bool:
        """Record the watchdog's resume of the stalled run `seen`, unless it showed life since it was read. `token`
        is this resume's own: the SDK's retry of our applied write finds it in place of the heartbeat it changed."""
        heartbeat, values = _heartbeat_condition(seen)
        return self._conditional_update(
            run_id,
            "SET heartbeat_at = :now, resumes = :resumes, resumed_at_step = :seen, resume_token = :token",
            f"committed_step = :seen AND #status = :running AND ({heartbeat} OR resume_token = :token)",
            {
                ":now": now,
                ":resumes": resumes,
                ":seen": seen["committed_step"],
                ":running": "running",
                ":token": token,
                **values,
            },
            status=True,
        )

    def continue_stopped(
        self, run_id: str, *, seen: dict[str, Any], token: str, at: float, lease: dict[str, Any]
    ) -> bool:
        """`lnn resume` of the stopped run `seen`: back to running at its committed step, only while it is this very
        stopped ending (`status = stopped` and its `continuations`; a run continued and stopped again since is
        another ending). Clears the stop request, refreshes the heartbeat, starts the watchdog's stall count
        afresh, marks the next step unsent with `lease` (this command's claim on sending it), and cancels the
        stop's message if it was not sent (a continued run is owed no message until it ends again; the ending's
        number in every notification claim fences out a late claimant of the stop). `token` is this command's own:
        when the SDK retried our applied write, the condition fails and the record names us."""
        ending = seen.get("continuations", 0)
        stopped, values = _ending_condition(ending)
        applied = self._conditional_update(
            run_id,
            "SET #status = :running, stop_requested = :no, heartbeat_at = :now, resumes = :zero,"
            " invoked_step = :committed, send_lease = :lease, continuations = :next, continued_by = :token,"
            " notified = :no, model_staged = :no, updated_at = :stamp"
            f" REMOVE {MESSAGE_DUE}, reason, finished_at, ended_by, notifier, notify_lease",
            f"#status = :stopped AND {stopped}"
            " AND (notified = :yes OR attribute_not_exists(notify_lease) OR notify_lease < :now OR notifier = :token)",
            {
                ":running": "running",
                ":stopped": "stopped",
                ":no": False,
                ":yes": True,
                ":now": at,
                ":zero": 0,
                ":committed": seen["committed_step"],
                ":lease": lease,
                ":next": ending + 1,
                ":token": token,
                ":stamp": now(),
                **values,
            },
            status=True,
        )
        if applied:
            return True
        latest = self.get_run(run_id)
        return latest is not None and latest.get("continued_by") == token

    def refresh_heartbeat(self, run_id: str, *, step: int, now: float) -> bool:
        """Show life for committed `step` (`lnn resume` re-sends its successor), so that the watchdog does not
        judge the run stalled while the re-sent events are in flight. False when the run moved on or ended."""
        return self._conditional_update(
            run_id,
            "SET heartbeat_at = :now",
            "committed_step = :step AND #status = :running",
            {":now": now, ":step": step, ":running": "running"},
            status=True,
        )

    def join_barrier(self, run_id: str, step: int, shard: int) -> set[int]:
        """Add `shard` to the set of shards done in the round that step `step` reduces; returns the set as it was
        before this write. The ADD of a set member is idempotent and atomic: of all writes, exactly one finds the
        other K - 1 shards and not its own, and that one completes the round."""
        self._count_write()
        answer = _outlasting_conflicts(
            self._table.update_item,
            Key={"run_id": run_id, "epoch": barrier_epoch(step)},
            UpdateExpression="ADD shards_done :shard",
            ExpressionAttributeValues={":shard": {shard}},
            ReturnValues="ALL_OLD",
        )
        return {int(done) for done in answer.get("Attributes", {}).get("shards_done", set())}

    def claim_reduce(self, run_id: str, step: int, *, claimant: str, now: float, until: float) -> bool:
        """Claim the sending of a complete round's reduce event until `until`: the write that completed the round
        claims it first (and the SDK's retry of that claim finds its own name); a retry of its event (it died
        before sending) claims again once the lease expired; its twins and the duplicates of other shards find
        the lease live and send nothing."""
        return self._conditional_update(
            run_id,
            "SET reduce_lease = :until, reduce_by = :claimant",
            "attribute_not_exists(reduce_lease) OR reduce_lease < :now OR reduce_by = :claimant",
            {":until": until, ":now": now, ":claimant": claimant},
            epoch=barrier_epoch(step),
        )

    def shards_done(self, run_id: str, step: int) -> set[int]:
        """The shards whose results are in for the round that step `step` reduces."""
        self._counter.count("dynamodb")
        item = self._table.get_item(Key={"run_id": run_id, "epoch": barrier_epoch(step)}, ConsistentRead=True).get(
            "Item"
        )
        return {int(done) for done in (item or {}).get("shards_done", set())}

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
                _outlasting_conflicts(client.transact_write_items, TransactItems=[check, *puts])
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

    def _get_item(self, partition: str, epoch: int) -> dict[str, Any] | None:
        self._counter.count("dynamodb")
        item = self._table.get_item(Key={"run_id": partition, "epoch": epoch}, ConsistentRead=True).get("Item")
        return from_dynamo(item) if item else None

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

    def run_ids(self, status: str | None = None) -> list[str]:
        """The ids of the runs with `status` (all runs when None), from the status index."""
        request = {"IndexName": RUNS_BY_STATUS_INDEX}
        if status is not None:
            request |= {
                "KeyConditionExpression": "#status = :status",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":status": status},
            }
        read = self._table.query if status is not None else self._table.scan
        run_ids, start = [], {}
        while True:
            self._counter.count("dynamodb")
            page = read(**request, **start)
            run_ids += [item["run_id"] for item in page["Items"]]
            if "LastEvaluatedKey" not in page:
                return run_ids
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}

    def list_runs(self, status: str | None = None) -> list[dict[str, Any]]:
        """The run records with `status` (all when None), read consistently (the index itself is eventually
        consistent)."""
        runs = (self.get_run(run_id) for run_id in self.run_ids(status))
        return [run for run in runs if run is not None and (status is None or run["status"] == status)]

    def add_usage(self, run_id: str, usage: dict[str, int]) -> None:
        """Add a delivery's usage (`usage.DeliveryMeter`) to the run record's counters: an atomic ADD, whatever the
        run's step or status (a late duplicate is paid for too), of attributes the protocol never reads. Nothing
        when the run does not exist: the ADD would create a record."""
        self._count_write()
        try:
            _outlasting_conflicts(
                self._table.update_item,
                Key={"run_id": run_id, "epoch": RUN_RECORD_EPOCH},
                UpdateExpression="ADD " + ", ".join(f"{name} :{name}" for name in usage),
                ConditionExpression="attribute_exists(run_id)",
                ExpressionAttributeValues={f":{name}": value for name, value in usage.items()},
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise

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
            _outlasting_conflicts(
                self._table.update_item,
                Key={"run_id": run_id, "epoch": epoch},
                UpdateExpression=update,
                ConditionExpression=f"attribute_exists(run_id) AND ({condition})",
                ExpressionAttributeValues=to_dynamo(values),
                **({"ExpressionAttributeNames": names} if names else {}),
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True


def _heartbeat_condition(seen: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A condition that the run's heartbeat is the one in `seen` (absent in records of earlier releases)."""
    if seen.get("heartbeat_at") is None:
        return "attribute_not_exists(heartbeat_at)", {}
    return "heartbeat_at = :heartbeat", {":heartbeat": seen["heartbeat_at"]}


def _ending_condition(ending: int) -> tuple[str, dict[str, Any]]:
    """A condition that the run is at its ending number `ending` (its `continuations`; absent before the first)."""
    if ending == 0:
        return "(attribute_not_exists(continuations) OR continuations = :ending)", {":ending": 0}
    return "continuations = :ending", {":ending": ending}


def barrier_epoch(step: int) -> int:
    """The sort key of a round's barrier item: negative, apart from the run record (0) and the epoch items (1...)."""
    return -step


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


def send_lease(step: int, *, claimant: str, until: float) -> dict[str, Any]:
    """Who may send the event of `step`, until when (clock seconds): taken by a commit or by `claim_send`."""
    return {"step": step, "by": claimant, "until": until}


def _condition_failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


def _outlasting_conflicts(write, **request):
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
