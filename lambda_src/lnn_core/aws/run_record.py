"""The run record (the run table's item at epoch 0): its creation, its conditional writes (of all deliveries of a step
exactly one commits, `transition`; a re-send and the run's message each go to one claimant at a time), the stop and
resume requests, the listing of runs by status and of the messages owed, and the atomic ADDs of usage.
"""

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lnn_core.aws.codec import to_dynamo
from lnn_core.aws.sdk import now
from lnn_core.aws.table_access import RUN_RECORD_EPOCH, TableAccess, condition_failed, outlasting_conflicts

# A sparse, keys-only index of the run records (only they have `status`): the watchdog finds running runs
# without scanning the epoch items, and a step's updates of other attributes cost the index nothing. The stack
# creates the index by this name (lnn_stack imports it from here); `RunTable.run_ids` reads it.
RUNS_BY_STATUS_INDEX = "runs-by-status"


# Sparse as well: only an ended run whose message is not yet recorded as sent carries `message_due`, so the
# watchdog finds the messages still owed (a claimant that died, a retry that came inside the lease) without a scan.
RUNS_AWAITING_MESSAGE_INDEX = "runs-awaiting-message"


MESSAGE_DUE = "message_due"
MESSAGE_DUE_VALUE = "due"  # the one value of `MESSAGE_DUE`: the index needs a key, the sweep needs only presence


class RunExists(Exception):
    """A run with this id was already created."""


class RunRecordOperations(TableAccess):
    """The run table's operations on the run record."""

    def create_run(self, run_id: str, record: dict[str, Any], *, token: str) -> None:
        """Create the run record once; a second create (a duplicate launch) raises `RunExists`. `token` is this
        launch's own: when the SDK retries a create whose answer was lost, the record it finds is ours, not a twin's."""
        self._count_write()
        item = to_dynamo({**record, "run_id": run_id, "epoch": RUN_RECORD_EPOCH, "launch_token": token})
        try:
            outlasting_conflicts(self._table.put_item, Item=item, ConditionExpression="attribute_not_exists(run_id)")
        except ClientError as error:
            if not condition_failed(error):
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
            outlasting_conflicts(
                self._table.update_item,
                Key={"run_id": run_id, "epoch": RUN_RECORD_EPOCH},
                UpdateExpression="ADD " + ", ".join(f"{name} :{name}" for name in usage),
                ConditionExpression="attribute_exists(run_id)",
                ExpressionAttributeValues={f":{name}": value for name, value in usage.items()},
            )
        except ClientError as error:
            if not condition_failed(error):
                raise


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


def send_lease(step: int, *, claimant: str, until: float) -> dict[str, Any]:
    """Who may send the event of `step`, until when (clock seconds): taken by a commit or by `claim_send`."""
    return {"step": step, "by": claimant, "until": until}
