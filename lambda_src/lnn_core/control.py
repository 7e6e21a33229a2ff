"""Run control shared by the trainer, the launcher, the watchdog and the `lnn` command.

Sending the next event, ending a run, notifying once, stopping and resuming: each is a small sequence of
port calls whose order is what makes the run exactly once in effect.
"""

import time
from datetime import datetime
from typing import Any

from .errors import LnnInputError
from .ports import Ports, now

TERMINAL = ("succeeded", "failed", "stopped")
MAX_RESUMES = 3  # a run that stalls more often than this is failed, not resumed forever


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


def ensure_notified(ports: Ports, run: dict[str, Any]) -> None:
    """Publish the run's one end-of-run message unless a delivery already recorded publishing it."""
    if run["status"] not in TERMINAL or run.get("notified", True):
        return
    ports.notifier.publish(subject=subject(run), body=message(run), status=run["status"])
    ports.table.mark_notified(run["run_id"])


def end_run(ports: Ports, run: dict[str, Any], *, status: str, reason: str) -> dict[str, Any]:
    """Move a running run to a terminal status at its current step, and notify once."""
    fields = {"status": status, "reason": reason, "finished_at": now(), "notified": False, "next_event": None}
    if not ports.table.transition(run["run_id"], seen_step=run["committed_step"], new_step=run["committed_step"], fields=fields):
        return {"outcome": "duplicate"}
    ensure_notified(ports, {**run, **fields})
    return {"outcome": status, "reason": reason}


def fail_run(ports: Ports, run: dict[str, Any], reason: str) -> dict[str, Any]:
    return end_run(ports, run, status="failed", reason=reason)


def stop_run(ports: Ports, run_id: str) -> dict[str, Any]:
    """Ask a run to stop at its next step boundary."""
    run = _existing(ports, run_id)
    if not ports.table.request_stop(run_id):
        raise LnnInputError(f"run {run_id} is {run['status']}, not running; nothing to stop")
    return {"run_id": run_id, "stop_requested": True}


def resume_run(ports: Ports, run_id: str) -> dict[str, Any]:
    """Re-send a run's next committed step. Safe while the run is alive: a duplicate delivery is dropped."""
    run = _existing(ports, run_id)
    if run["status"] != "running" or not run.get("next_event"):
        raise LnnInputError(f"run {run_id} is {run['status']}; only a running run can be resumed")
    if run.get("resumes", 0) >= MAX_RESUMES:
        return {"run_id": run_id, **fail_run(ports, run, f"stalled {MAX_RESUMES + 1} times; see the trainer's logs")}
    if not ports.table.record_resume(run_id, seen_step=run["committed_step"]):
        return {"run_id": run_id, "outcome": "moved on"}  # it made progress since we read it: not stalled
    ports.invoker.invoke_async(run["next_event"])
    return {"run_id": run_id, "outcome": "resumed", "step": run["next_event"]["step"]}


class Watchdog:
    """Scheduled: resumes running runs that made no progress for `stall_seconds`."""

    def __init__(self, ports: Ports, *, stall_seconds: float, logger):
        self.ports, self.stall_seconds, self.log = ports, stall_seconds, logger

    def handle(self, event: Any = None, context: Any = None) -> dict[str, Any]:
        stalled = [
            run["run_id"]
            for run in self.ports.table.list_runs("running")
            if seconds_since(run["updated_at"]) > self.stall_seconds
        ]
        outcomes = [resume_run(self.ports, run_id) for run_id in stalled]
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
