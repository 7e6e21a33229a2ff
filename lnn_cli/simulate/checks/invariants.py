"""The invariants, checked after every scheduler event (cheaply: moto's backend is read directly, and the writes
are seen as they are applied, in the clients' wrapper) and at the end of a schedule.

| name | what |
| --- | --- |
| commits | committed_step moves only by s-1 -> s, once per step; no other claimant re-commits a committed step |
| fence | no step body (`Trainer._execute`) starts once its step was committed |
| epochs | every epoch 1..progress_epoch has its figures item and its weights item; a committed epoch's items never
  change; readers (`RunTable.committed_epochs`) see exactly epochs 1..progress_epoch, each with its weights |
| model | runs/<id>/model.npz exists only once an ending with a model committed (a finish, or a stop after an epoch),
  and is the model of the epoch such an ending recorded (`model_epoch`); at the end, of the record's `model_epoch` |
| message | at most one SNS message per ending of the run (a stop that `lnn resume` continued is one ending, what
  follows another), except the documented cases; at least one for the last ending once the run ended and the
  watchdog passed with nothing in flight |
| reference | a succeeded run's model, committed costs and final training state equal `train_reference_state`, bit for
  bit; a stopped or failed run's costs are a prefix of the reference's, and its model (if any) is the reference's
  after its `model_epoch`, bit for bit |
| claims | a catch-up wins the re-send of a step's successor only while it is unsent (invoked_step below it) |
| immutable | no object of a run's training state (a round's sums and state slices included) is overwritten with other
  bytes while it exists: every writer of a key writes the same bytes |
| liveness | the run ends within a bound of virtual time; the schedule becomes quiescent |

The model and reference rows are checked by `model_checks.ModelChecks`, a part of `Monitor`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from lnn_cli.simulate.checks.model_checks import ModelChecks
from lnn_cli.simulate.scenario import QUIET_TICKS, RUN_ID, START, WATCHDOG_EVERY
from lnn_core import run_control
from lnn_core.protocol import sending
from lnn_core.protocol.ending import TERMINAL

if TYPE_CHECKING:
    from lnn_cli.simulate.simulator import Simulator


class Violation(BaseException):  # no handler's `except Exception` may swallow it
    def __init__(self, invariant: str, detail: str):
        super().__init__(f"{invariant}: {detail}")
        self.invariant, self.detail = invariant, detail


class Monitor(ModelChecks):
    def __init__(self, sim: Simulator, *, check_every_event: bool = True):

        self.sim, self.world = sim, sim.world
        self.every_event = check_every_event
        self.lease = sending.LEASE_SECONDS
        self.max_resumes = run_control.MAX_RESUMES
        self.rules = _default_rules()
        self.liveness_bound = (
            self.rules.stall_seconds * (self.max_resumes + 2)
            + self.rules.event_age_seconds
            + self.rules.timeout_seconds
            + 3 * 3600
        )
        self.committed = 0  # committed_step as last seen
        self.committed_by: Any = None
        self.commits: dict[int, str] = {}
        self.progress = 0
        self.snapshots: dict[
            tuple[str, int], str
        ] = {}  # a committed epoch's items by (partition, epoch), as first seen
        self.messages: list[dict[str, Any]] = []
        self.model_epochs: set[int] = set()  # the `model_epoch` of every ending that committed
        self.model_digest: bytes | None = None  # the published model's bytes as last checked
        self.excuses: set[str] = set()
        self.notified = False
        self.status: str | None = None
        self.bodies = 0
        self.allowed_hits: list[str] = []

    def _fail(self, invariant: str, detail: str) -> None:
        """A violation ends the schedule, unless its invariant is allowed (`--allow`: to look past a known defect)."""
        if invariant in self.sim.allowed:
            if not any(hit.startswith(invariant) for hit in self.allowed_hits):
                self.allowed_hits.append(f"{invariant}: {detail}")
            return
        raise Violation(invariant, detail)

    # ---- taps --------------------------------------------------------------------------------------------

    def watch_trainer(self, trainer) -> None:
        execute = trainer._execute

        def fenced(position, config, run, context):
            tap = ("fence", run["run_id"], position.step, position.state)
            if self.sim.replay is not None:  # the memoized search checks it where the delivery is, in each state
                self.sim.replay.tap(tap)
            else:
                self.tap(tap)
            return execute(position, config, run, context)

        trainer._execute = fenced

    def tap(self, tap: tuple) -> None:
        """A check of what a handler does between two port calls: a step body starts (`fence`)."""
        _, run_id, step, state = tap
        record = self.world.fields(run_id, "committed_step")
        self.bodies += 1
        if record is not None and record.get("committed_step", 0) >= step:
            self._fail(
                "fence",
                f"the body of step {step} ({state}) started after its step "
                f"was committed (committed_step {record['committed_step']}) in "
                f"{self.sim.current.label() if self.sim.current else '?'}",
            )

    def invoked(self) -> None:
        pass

    def before_write(self, service: str, operation: str, params: dict[str, Any]) -> Any:
        """What a write's check needs from before it: of a PUT of a training state object, the bytes it replaces."""
        if service == "s3" and operation == "put_object" and "/state/" in params.get("Key", ""):
            return self.world.object(params["Key"])
        return None

    def after_write(self, service: str, operation: str, params: dict[str, Any], before: Any) -> None:
        """An applied write (its answer may still be lost)."""
        delivery = self.sim.current
        if service == "sns":
            try:
                body = json.loads(params.get("Message", "{}"))
            except ValueError:
                body = {}
            if body.get("run_id") != RUN_ID or body.get("status") not in TERMINAL:
                return
            self.messages.append(
                {
                    "status": body.get("status"),
                    "by": delivery.label() if delivery else "?",
                    "at": self.sim.now,
                    "id": body.get("message_id"),
                }
            )
            self.sim.log(f"PUBLISHED message {len(self.messages)} ({body.get('status')})")
            if delivery is not None:
                delivery.published.add(RUN_ID)
                if delivery.frozen_long:
                    self.excuses.add(f"a publisher ({delivery.label()}) was frozen past the lease")
                if abs(delivery.container.skew) > self.lease:
                    self.excuses.add(
                        f"a publisher ({delivery.label()}) has a clock skewed by {delivery.container.skew:+.0f} s"
                    )
            same = [m for m in self.messages if m["id"] == body.get("message_id")]
            if len(same) > 1 and not self.excuses:
                self._fail(
                    "message",
                    f"{len(same)} messages for one ending of {RUN_ID} ({body.get('message_id')}, by "
                    f"{', '.join(m['by'] for m in same)}), none of the documented cases",
                )
            return
        if service == "dynamodb":
            key = params.get("Key") or params.get("Item") or {}
            record_only = operation in ("update_item", "put_item", "delete_item") and key.get("epoch") == 0
            self._after_table_write(delivery, items_touched=not record_only)
        elif service == "s3":
            body = params.get("Body")
            if before is not None and isinstance(body, bytes) and body != before:
                self._fail(
                    "immutable",
                    f"{params['Key']} was overwritten with other bytes by "
                    f"{delivery.label() if delivery is not None else '?'}",
                )
            self._check_model()

    def returned(self, where: str, result: Any, args: tuple = (), kwargs: dict | None = None) -> None:
        """A port method returned (a claim's answer is what it says)."""
        delivery = self.sim.current
        if where == "table.claim_send" and result:
            step = args[1] if len(args) > 1 else (kwargs or {}).get("step")
            record = self.world.fields(RUN_ID, "invoked_step") or {}
            if step is not None and record.get("invoked_step", 0) >= step + 1:
                self._fail(
                    "claims",
                    f"{delivery.label() if delivery else '?'} won the re-send of step {step + 1}, "
                    f"already recorded as sent (invoked_step {record['invoked_step']})",
                )
        if where == "table.claim_notification" and result and delivery is not None:
            delivery.notify_claim = True
            if abs(delivery.container.skew) > self.lease:
                self.excuses.add(
                    f"a claimant ({delivery.label()}) has a clock skewed by {delivery.container.skew:+.0f} s"
                )

    def frozen(self, delivery) -> None:
        """The delivery is frozen past the lease: if it holds the message's claim, a second message is documented."""
        if (delivery.notify_claim or RUN_ID in delivery.published) and not self.notified:
            self.excuses.add(f"a claimant ({delivery.label()}) was frozen past the lease")

    def lost_publish(self) -> None:
        self.excuses.add("a publish's answer was lost (the SDK published again)")

    def delivery_died(self, delivery) -> None:
        if RUN_ID in delivery.published and not self.notified:
            self.excuses.add(f"a publisher ({delivery.label()}) died before it recorded the message")

    # ---- checks ------------------------------------------------------------------------------------------

    def _after_table_write(self, delivery, *, items_touched: bool = True) -> None:
        record = self.world.fields(
            RUN_ID, "committed_step", "committed_by", "notified", "status", "progress_epoch", "model_epoch"
        )
        if record is None:
            return
        step, by = record.get("committed_step", 0), record.get("committed_by")
        who = delivery.label() if delivery is not None else "?"
        if step == self.committed + 1:
            self.commits[step] = by
            self.sim.log(f"COMMITTED step {step} by {who}")
        elif step == self.committed and step > 0 and by != self.committed_by:
            self._fail(
                "commits", f"step {step} committed again by {who} (committed_by {self.committed_by!r} -> {by!r})"
            )
        elif step != self.committed:
            self._fail("commits", f"committed_step moved from {self.committed} to {step} (write by {who})")
        self.committed, self.committed_by = step, by
        notified = record.get("notified") is True  # false again once `lnn resume` continued a stopped run
        if notified and not self.notified and delivery is not None:
            delivery.published.discard(RUN_ID)
        self.notified = notified
        if record.get("model_epoch") is not None:
            self.model_epochs.add(int(record["model_epoch"]))
        self.status = record.get("status")
        progress = record.get("progress_epoch") or 0
        if progress < self.progress:
            self._fail("epochs", f"progress_epoch went back from {self.progress} to {progress}")
        if progress == self.progress and not items_touched:
            return  # a write of the run record alone: no epoch item changed
        from lnn_core.aws.epoch_items import weights_partition

        items = self.world.epoch_items(RUN_ID)
        for epoch in range(self.progress + 1, progress + 1):
            for key, kind in (((RUN_ID, epoch), "figures"), ((weights_partition(RUN_ID), epoch), "weights")):
                if key not in items:
                    self._fail("epochs", f"epoch {epoch} committed (progress_epoch {progress}) without its {kind} item")
                self.snapshots[key] = _item_json(items[key])
        self.progress = progress
        for key, snapshot in self.snapshots.items():
            item = items.get(key)
            if item is None or _item_json(item) != snapshot:
                self._fail(
                    "epochs", f"the item at key {key} of a committed epoch changed after its commit (write by {who})"
                )

    def after_event(self) -> None:
        if not self.every_event:
            return
        self._check_model()
        if self.status == "running" and self.sim.now - self.sim_start() > self.liveness_bound:
            self._fail("liveness", f"the run is still running {self.sim.now - self.sim_start():.0f} s after launch")

    def sim_start(self) -> float:

        return START

    def watchdog_may_act_at(self) -> float | None:
        """When, at the earliest, the watchdog may change something (None: not for the state as it is)."""
        record = self.world.fields(
            RUN_ID,
            "status",
            "stop_requested",
            "heartbeat_at",
            "resumes",
            "resumed_at_step",
            "committed_step",
            "notified",
            "notify_lease",
        )
        if record is None:
            return None
        if record.get("status") in TERMINAL:
            if record.get("notified", True):
                return None
            # a message still owed: the watchdog sends it once no claim holds it, however many claimants crash; a
            # message still unsent that long after the last claim is for the `message` invariant to report
            lease = record.get("notify_lease", 0)
            return None if self.sim.now > lease + QUIET_TICKS * WATCHDOG_EVERY else max(self.sim.now, lease)
        if record.get("status") != "running":
            return None
        if record.get("stop_requested"):
            return self.sim.now
        heartbeat = record.get("heartbeat_at", 0)
        in_a_row = record.get("resumes", 0) if record.get("resumed_at_step") == record.get("committed_step") else 0
        wait = self.rules.stall_seconds
        if in_a_row >= self.max_resumes:
            wait = self.rules.event_age_seconds + self.rules.timeout_seconds
        return max(self.sim.now, heartbeat + wait - 120.0)

    def at_end(self) -> None:
        """The schedule is quiescent: nothing queued or in flight, and the watchdog passed."""
        self.after_event()
        record = self.world.record(RUN_ID)
        if record is None:
            return  # never launched: every launch attempt died before creating it
        self._after_table_write(None)
        status = record["status"]
        if status not in TERMINAL:
            self._fail(
                "liveness",
                f"the run is {status} at quiescence (committed_step {record['committed_step']}, "
                "nothing in flight, the watchdog passed)",
            )
            return
        from lnn_core.protocol.end_message import message_id

        last = [m for m in self.messages if m["id"] == message_id(record)]
        if not last:
            self._fail(
                "message",
                f"the run {status} and no message of that ending ({message_id(record)}) was "
                f"published, with nothing in flight and the watchdog passed "
                f"(notified={record.get('notified')})",
            )
        if len(last) > 1 and not self.excuses:
            self._fail("message", f"{len(last)} messages for its last ending, none of the documented cases")
        self._check_kept_model(record)
        self._check_readers(record)
        self._check_reference(record)

    def _check_readers(self, record: dict[str, Any]) -> None:
        from lnn_cli.simulate.aws import direct_clients
        from lnn_cli.simulate.aws.world import TABLE
        from lnn_core.aws.run_table import RunTable
        from lnn_core.aws.sdk import IoCounter

        reader = RunTable(direct_clients.DirectTable(TABLE, direct_clients.DirectDynamoClient()), IoCounter())
        seen = reader.committed_epochs(reader.get_run(RUN_ID))
        epochs = [item["epoch"] for item in seen]
        if epochs != list(range(1, (record.get("progress_epoch") or 0) + 1)):
            self._fail(
                "epochs", f"committed_epochs gives epochs {epochs}, progress_epoch is {record.get('progress_epoch')}"
            )
        if any("weights" not in item and "weight_norms" not in item for item in seen):
            self._fail("epochs", "committed_epochs gives an epoch without its weights")
        self.committed_costs = [item["cost"] for item in seen]


def _default_rules():
    """The watchdog's StallRules as `handlers.build_watchdog` makes them from its environment's defaults."""
    import os

    from lnn_core.run_control import StallRules

    return StallRules(
        stall_seconds=float(os.environ.get("LNN_STALL_SECONDS", "900")),
        timeout_seconds=float(os.environ.get("LNN_TRAINER_TIMEOUT_SECONDS", "900")),
        event_age_seconds=float(os.environ.get("LNN_EVENT_AGE_SECONDS", "21600")),
    )


def _item_json(item) -> str:
    return json.dumps(item.to_json(), sort_keys=True, default=str)
