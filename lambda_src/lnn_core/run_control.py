"""Run control: `lnn stop` and `lnn resume` (a stopped run continues from its last committed step), and the
Watchdog, which resumes stalled runs, fails the dead and sends the messages still owed."""

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from lnn_core.aws.ports import Ports
from lnn_core.aws.run_record import send_lease
from lnn_core.aws.sdk import now
from lnn_core.errors import LnnInputError
from lnn_core.protocol.ending import TERMINAL, ensure_notified, fail_run, publish_model
from lnn_core.protocol.layout import staged_model_key
from lnn_core.protocol.sending import ensure_next_sent, lease_until, pending

MAX_RESUMES = 3  # a run that stalls at one step more often than this (and can have nothing in flight) is failed


def stop_run(ports: Ports, run_id: str) -> dict[str, Any]:
    """Ask a run to stop at its next step boundary."""
    _existing(ports, run_id)
    if not ports.table.request_stop(run_id, token=f"stop-{uuid.uuid4().hex}"):
        status = _existing(ports, run_id)["status"]
        raise LnnInputError(f"run {run_id} is {status}, not running; nothing to stop")
    return {"run_id": run_id, "stop_requested": True}


def resume_run(ports: Ports, run_id: str) -> dict[str, Any]:
    """`lnn resume`: continue a stopped run from its last committed step (`continue_stopped`), or re-send a running
    run's next committed step. The re-send is always harmless: a duplicate of a live step is dropped by the commit,
    so it neither counts as a stall nor can fail the run. It refreshes the heartbeat first, so that the watchdog
    does not judge the run stalled while the re-sent events are in flight."""
    run = _existing(ports, run_id)
    token = f"continue-{uuid.uuid4().hex}"  # this command's own: the SDK's retry of its applied write finds it
    while run["status"] == "stopped":
        continued = continue_stopped(ports, run, token=token)
        if continued is not None:
            return continued
        latest = _existing(ports, run_id)  # another `lnn resume` continued it meanwhile
        if latest["status"] == "stopped" and latest.get("continuations") == run.get("continuations"):
            raise LnnInputError(
                f"run {run_id} could not be continued: its stop is still settling (its message or "
                f"model is being published); try `lnn resume {run_id}` again in a few seconds"
            )
        run = latest
    while (
        run["status"] == "running"
        and run.get("next_event")
        and not ports.table.refresh_heartbeat(run_id, step=run["committed_step"], now=ports.clock())
    ):
        run = _existing(ports, run_id)  # it moved on meanwhile: re-send what is next now
    if run["status"] != "running" or not run.get("next_event"):
        raise LnnInputError(f"run {run_id} is {run['status']}; only a running or stopped run can be resumed")
    for invocation in pending(ports, run):
        ports.invoker.invoke_async(invocation)
    return {"run_id": run_id, "outcome": "resumed", "step": run["next_event"]["step"]}


def continue_stopped(ports: Ports, run: dict[str, Any], *, token: str) -> dict[str, Any] | None:
    """Continue the stopped run `run` from its last committed step, exactly once: its stop's model is published
    first (and its staged copy removed, so that no late copy of this ending replaces a later ending's model); then
    one conditional write moves this very ending (`status = stopped`, its `continuations`) back to running, clears
    the stop request, refreshes the heartbeat, starts the stall count afresh, cancels the stop's message if it was
    not sent, and takes the lease on sending the next step; that step is then sent through the send claim, as every
    re-send is. None when the write found the run no longer this stopped ending (another resume continued it)."""
    run_id, following = run["run_id"], run.get("next_event")
    if not following:
        raise LnnInputError(
            f"run {run_id} was stopped by an earlier release of LNN, which kept no next step; "
            "it cannot be continued: start a new run"
        )
    until = lease_until(ports, None)
    if not run.get("notified", True):  # the stop's message is not sent: take its claim, so that no copy of the
        # stop's model (made only under that claim) can land once the run continued
        if not ports.table.claim_notification(
            run_id, token, now=ports.clock(), until=until, ending=run.get("continuations", 0)
        ):
            wait = max(1, round(float(run.get("notify_lease", ports.clock())) - ports.clock()))
            raise LnnInputError(
                f"run {run_id}'s stop is sending its message; try `lnn resume {run_id}` again in {wait} s"
            )
        if run.get("model_staged"):
            publish_model(ports, run)  # (an earlier `lnn resume` may have published it and removed its staged copy)
    if run.get("model_staged"):
        ports.store.delete_keys([staged_model_key(run_id, run["model_epoch"])])
    if not ports.table.continue_stopped(
        run_id,
        seen=run,
        token=token,
        at=ports.clock(),
        lease=send_lease(following["step"], claimant=token, until=until),
    ):
        return None
    resumed = {**run, "status": "running", "invoked_step": run["committed_step"], "stop_requested": False}
    ensure_next_sent(ports, resumed, claimant=token)
    return {
        "run_id": run_id,
        "outcome": "continued",
        "step": following["step"],
        "epoch": run.get("progress_epoch", 0),
        "model_epoch": run.get("model_epoch"),
    }


@dataclass(frozen=True)
class StallRules:
    """When a run counts as stalled, and when nothing of it can be alive any more."""

    stall_seconds: float  # no commit, no started delivery and no resume for this long: resume it
    timeout_seconds: float  # the trainer's timeout: a started delivery is dead after this
    event_age_seconds: float  # the trainer's maximum event age: a sent event is delivered or dropped by then

    def stalled(self, run: dict[str, Any], now: float) -> bool:
        return now - run.get("heartbeat_at", 0) > self.stall_seconds

    def nothing_in_flight(self, run: dict[str, Any], now: float) -> bool:
        """No delivery of the next step can still be running or queued: every event of it was sent (by the commit,
        the launch or the watchdog's last resume, each of which sets the heartbeat) longer ago than its maximum age
        plus one timeout, so it has been delivered, or dropped."""
        return now - run.get("heartbeat_at", 0) > self.event_age_seconds + self.timeout_seconds


class SweepReconciler(Protocol):
    """What the watchdog drives sweeps with (`lnn_core.sweep.controller.SweepController`)."""

    def active(self) -> list[str]: ...

    def reconcile(self, sweep_id: str) -> dict[str, Any]: ...

    def judges(self, sweep_id: str, epoch: int) -> bool: ...


class Watchdog:
    """Scheduled: resumes running runs that showed no life for `stall_seconds`, at most `MAX_RESUMES` times in a row
    at one step; then waits until nothing of that step can still be in flight, and fails the run. Then it drives
    every active sweep a pass toward its end (`sweeps`). Invoked with `{"sweep": <sweep_id>}` (a sweep trial's end
    kicks it), it reconciles that sweep alone; with `{"sweep": <sweep_id>, "epoch": <epoch>}` (a trial committed an
    epoch with a validation cost), only when that epoch is one of the sweep's halving rungs (else it reads the
    sweep's record alone and returns)."""

    def __init__(self, ports: Ports, *, rules: StallRules, logger, sweeps: SweepReconciler | None = None):
        self.ports, self.rules, self.log, self.sweeps = ports, rules, logger, sweeps

    def handle(self, event: Any = None, context: Any = None) -> dict[str, Any]:
        if isinstance(event, dict) and "sweep" in event:
            return self._kicked(event["sweep"], event.get("epoch"))
        now_seconds = self.ports.clock()
        stalled = [
            self._guarded(run["run_id"], self._resume, run, now_seconds)
            for run in self.ports.table.list_runs("running")
            if self.rules.stalled(run, now_seconds)
        ]
        owed = [
            self._guarded(run_id, self._send_message_owed, run_id, now_seconds, context)
            for run_id in self.ports.table.runs_awaiting_message()
        ]
        owed = [outcome for outcome in owed if outcome is not None]
        sweeps = (
            [self._guarded(sweep_id, self.sweeps.reconcile, sweep_id) for sweep_id in self.sweeps.active()]
            if self.sweeps
            else []
        )
        for outcome in stalled + owed:
            (self.log.error if outcome["outcome"] == "error" else self.log.warning)("watchdog", extra=outcome)
        for outcome in sweeps:  # a sweep's pass is routine: info
            (self.log.error if outcome["outcome"] == "error" else self.log.info)("watchdog: sweep", extra=outcome)
        errors = [outcome for outcome in stalled + owed + sweeps if outcome["outcome"] == "error"]
        if errors:  # the invocation fails, so that its on-failure destination (the dead-letter queue) and alarm tell
            raise RuntimeError(f"the watchdog could not handle {len(errors)} run(s) or sweep(s): {errors}")
        return {"checked_at": now(), "stalled": stalled, "messages_owed": owed, "sweeps": sweeps}

    def _kicked(self, sweep_id: Any, epoch: Any) -> dict[str, Any]:
        """A sweep trial ended, or reached `epoch`: reconcile its sweep now, if a rung judges that epoch (a failure
        here is retried by the next scheduled pass)."""
        if self.sweeps is None:
            return {"sweep_id": sweep_id, "outcome": "no sweep controller"}
        if epoch is not None and not self.sweeps.judges(sweep_id, epoch):
            return {"sweep_id": sweep_id, "outcome": f"no halving rung at epoch {epoch}"}
        outcome = self.sweeps.reconcile(sweep_id)
        self.log.info("watchdog: sweep kicked", extra=outcome)
        return outcome

    @staticmethod
    def _guarded(run_id: str, action, *args) -> dict[str, Any] | None:
        """`action(*args)`, or an error outcome: one run's trouble must not keep the others from their turn."""
        try:
            return action(*args)
        except Exception as error:
            return {"run_id": run_id, "outcome": "error", "reason": f"{type(error).__name__}: {error}"}

    def _resume(self, run: dict[str, Any], now_seconds: float) -> dict[str, Any]:
        run_id = run["run_id"]
        in_a_row = run.get("resumes", 0) if run.get("resumed_at_step") == run["committed_step"] else 0
        if in_a_row >= MAX_RESUMES:
            if not self.rules.nothing_in_flight(run, now_seconds):
                return {"run_id": run_id, "outcome": "waiting", "reason": "an event of its step may still be queued"}
            reason = f"stalled {in_a_row + 1} times at step {run['committed_step'] + 1}; see the trainer's logs"
            return {
                "run_id": run_id,
                **fail_run(self.ports, run, reason, claimant=f"watchdog-{uuid.uuid4().hex}", unless_alive=True),
            }
        if not self.ports.table.record_resume(
            run_id, seen=run, resumes=in_a_row + 1, now=now_seconds, token=f"watchdog-{uuid.uuid4().hex}"
        ):
            return {"run_id": run_id, "outcome": "moved on"}  # it showed life since it was read: not stalled
        for invocation in pending(self.ports, run):
            self.ports.invoker.invoke_async(invocation)
        return {"run_id": run_id, "outcome": "resumed", "step": run["next_event"]["step"]}

    def _send_message_owed(self, run_id: str, now_seconds: float, context: Any) -> dict[str, Any] | None:
        """An ended run whose message is not recorded as sent: its claimant died, or its retry came while the
        claim was live. Send it once no live claim holds it (a live claimant may still be sending)."""
        run = self.ports.table.get_run(run_id)
        if run is None or run["status"] not in TERMINAL or run.get("notified", True):
            return None
        if run.get("notify_lease", 0) >= now_seconds:
            return {"run_id": run_id, "outcome": "waiting", "reason": "a delivery holds its message's claim"}
        ensure_notified(self.ports, run, claimant=f"watchdog-{uuid.uuid4().hex}", context=context)
        return {"run_id": run_id, "outcome": "message sent", "status": run["status"]}


def _existing(ports: Ports, run_id: str) -> dict[str, Any]:
    run = ports.table.get_run(run_id)
    if run is None:
        raise LnnInputError(f"no run named {run_id!r}; `lnn runs` lists them")
    return run
