"""Run control shared by the trainer, the launcher, the watchdog and the `lnn` command.

Sending the next event, ending a run, notifying once, stopping and resuming: each is a small sequence of
port calls whose order is what makes the run exactly once in effect.
"""

import time
import uuid
from datetime import datetime
from typing import Any

from .errors import LnnInputError
from .ports import Ports, now

TERMINAL = ("succeeded", "failed", "stopped")
MAX_RESUMES = 3  # a run that stalls at one step more often than this is failed, not resumed forever
MAX_REASON = 1000  # characters: a reason is stored in the run record and sent in the message


def send(ports: Ports, run_id: str, event: dict[str, Any]) -> None:
    """Invoke the next step, then record that it was sent (a crash in between only causes a harmless duplicate)."""
    ports.invoker.invoke_async(event)
    ports.table.mark_invoked(run_id, event["step"])


def ensure_next_sent(ports: Ports, run: dict[str, Any]) -> bool:
    """Send the committed next event if no delivery recorded sending it (the sender crashed after its commit)."""
    following = run.get("next_event")
    if run["status"] != "running" or not following or run.get("invoked_step", 0) >= following["step"]:
        return False
    send(ports, run["run_id"], following)
    return True


def ensure_notified(ports: Ports, run: dict[str, Any], *, claimant: str) -> None:
    """Publish the run's one end-of-run message, unless it was published or another delivery claimed it."""
    if run["status"] not in TERMINAL or run.get("notified", True):
        return
    if not ports.table.claim_notification(run["run_id"], claimant):
        return
    ports.notifier.publish(subject=subject(run), body=message(run), status=run["status"])
    ports.table.mark_notified(run["run_id"])


def catch_up(ports: Ports, run: dict[str, Any], *, claimant: str) -> bool:
    """Finish what a committed step may have left undone (its crash, or a commit whose answer was lost)."""
    if run["status"] == "running":
        return ensure_next_sent(ports, run)
    ensure_notified(ports, run, claimant=claimant)
    return False


def end_run(ports: Ports, run: dict[str, Any], *, status: str, reason: str, claimant: str) -> dict[str, Any]:
    """Move a running run to a terminal status at its current step, and notify once."""
    reason = reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"  # it goes into an item and a message
    fields = {"status": status, "reason": reason, "finished_at": now(), "notified": False, "next_event": None}
    if not ports.table.transition(run["run_id"], seen_step=run["committed_step"], new_step=run["committed_step"], fields=fields):
        return {"outcome": "duplicate"}
    ensure_notified(ports, {**run, **fields}, claimant=claimant)
    return {"outcome": status, "reason": reason}


def fail_run(ports: Ports, run: dict[str, Any], reason: str, *, claimant: str) -> dict[str, Any]:
    return end_run(ports, run, status="failed", reason=reason, claimant=claimant)


def stop_run(ports: Ports, run_id: str) -> dict[str, Any]:
    """Ask a run to stop at its next step boundary."""
    run = _existing(ports, run_id)
    if not ports.table.request_stop(run_id):
        raise LnnInputError(f"run {run_id} is {run['status']}, not running; nothing to stop")
    return {"run_id": run_id, "stop_requested": True}


def resume_run(ports: Ports, run_id: str, *, seen: dict[str, Any] | None = None) -> dict[str, Any]:
    """Re-send the next committed step of a run that looked stalled in `seen` (default: a fresh read).

    Nothing is sent if the run moved on since `seen`; a duplicate of a live step is dropped anyway. A run
    resumed more than `MAX_RESUMES` times in a row at the same step is failed instead.
    """
    run = seen or _existing(ports, run_id)
    if run["status"] != "running" or not run.get("next_event"):
        raise LnnInputError(f"run {run_id} is {run['status']}; only a running run can be resumed")
    in_a_row = run.get("resumes", 0) if run.get("resumed_at_step") == run["committed_step"] else 0
    if in_a_row >= MAX_RESUMES:
        reason = f"stalled {MAX_RESUMES + 1} times at step {run['committed_step'] + 1}; see the trainer's logs"
        return {"run_id": run_id, **fail_run(ports, run, reason, claimant=f"resume-{uuid.uuid4().hex}")}
    if not ports.table.record_resume(run_id, seen=run, resumes=in_a_row + 1):
        return {"run_id": run_id, "outcome": "moved on"}  # it made progress since it was read: not stalled
    ports.invoker.invoke_async(run["next_event"])
    return {"run_id": run_id, "outcome": "resumed", "step": run["next_event"]["step"]}


class Watchdog:
    """Scheduled: resumes running runs that made no progress for `stall_seconds`."""

    def __init__(self, ports: Ports, *, stall_seconds: float, logger):
        self.ports, self.stall_seconds, self.log = ports, stall_seconds, logger

    def handle(self, event: Any = None, context: Any = None) -> dict[str, Any]:
        stalled = [
            run
            for run in self.ports.table.list_runs("running")
            if seconds_since(run["updated_at"]) > self.stall_seconds
        ]
        outcomes = []
        for run in stalled:
            try:
                outcomes.append(resume_run(self.ports, run["run_id"], seen=run))
            except LnnInputError as ended:  # it ended between the query and the resume
                outcomes.append({"run_id": run["run_id"], "outcome": "ended", "reason": str(ended)})
        for outcome in outcomes:
            self.log.warning("stalled run", extra=outcome)
        return {"checked_at": now(), "stalled": outcomes}


def subject(run: dict[str, Any]) -> str:
    final = run.get("final") or {}
    if run["status"] == "succeeded":
        return f"LNN run {run['run_id']} succeeded: cost {final.get('cost', 0):.4g}, train accuracy {final.get('train_accuracy', 0):.1%}"
    return f"LNN run {run['run_id']} {run['status']}"


def message(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run["run_id"],
        "status": run["status"],
        "reason": run.get("reason"),
        "final": run.get("final"),
        "config": run.get("config"),
        "created_at": run.get("created_at"),
        "finished_at": run.get("finished_at"),
    }


def seconds_since(timestamp: str) -> float:
    return time.time() - datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _existing(ports: Ports, run_id: str) -> dict[str, Any]:
    run = ports.table.get_run(run_id)
    if run is None:
        raise LnnInputError(f"no run named {run_id!r}; `lnn runs` lists them")
    return run
