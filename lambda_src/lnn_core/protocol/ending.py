"""Ending a run exactly once in effect: the ending transition, the model it publishes, and its one message
(claimed, then published, then recorded); `catch_up` finishes what a committed step may have left undone."""

from typing import Any

from lnn_core.aws.ports import Ports
from lnn_core.aws.run_record import MESSAGE_DUE, MESSAGE_DUE_VALUE
from lnn_core.aws.sdk import CLAIM_CALL_SECONDS, now
from lnn_core.protocol.end_message import message, message_id, subject
from lnn_core.protocol.layout import model_key, staged_model_key
from lnn_core.protocol.sending import Send, claim_next_send, lease_until

TERMINAL = ("succeeded", "failed", "stopped")


MODEL_ENDINGS = ("succeeded", "stopped")  # the endings that keep a model: the finish's, or the last committed epoch's


MAX_REASON = 1000  # characters: a reason is stored in the run record and sent in the message


def ensure_notified(ports: Ports, run: dict[str, Any], *, claimant: str, context: Any = None) -> None:
    """Publish a succeeded run's model, then the run's one end-of-run message, unless it was published or a live
    claim of another delivery holds it. Every message therefore follows its model. The claimant publishes only
    while its lease still covers a whole SDK call, so that no one else claims while its Publish may still land."""
    if run["status"] not in TERMINAL or run.get("notified", True):
        return
    until = lease_until(ports, context)
    ending = run.get("continuations", 0)
    if not ports.table.claim_notification(run["run_id"], claimant, now=ports.clock(), until=until, ending=ending):
        return
    if ports.clock() + CLAIM_CALL_SECONDS >= until:  # the claim itself took long: leave it to a retry or the sweep
        return
    if run["status"] in MODEL_ENDINGS and run.get("model_staged"):
        # Under the claim only: `lnn resume` takes the same claim, so no late copy of this ending's model can land
        # after the run continued and a later ending published its own.
        publish_model(ports, run)
        if ports.clock() + CLAIM_CALL_SECONDS >= until:
            return
    ports.notifier.publish(subject=subject(run), body=message(run), status=run["status"], message_id=message_id(run))
    kick_sweep(ports, run)
    ports.table.mark_notified(run["run_id"], ending=ending)  # if this fails, end normally: a retry would publish again


def kick_sweep(ports: Ports, run: dict[str, Any], *, epoch: int | None = None) -> None:
    """A sweep trial ended (or committed `epoch` with a validation cost, which a halving rung may judge): ask the
    watchdog to reconcile its sweep now (start a queued trial in the place it freed, stop a poor trial, send the
    sweep's message), not at its next scheduled pass. An epoch's kick names its epoch, so that the watchdog
    reconciles only when it is one of the sweep's rungs. At an ending, before the message is recorded sent, so that
    whoever sends a message still owed kicks again. Best effort: a lost or failed kick only waits for that pass,
    which reconciles every active sweep; it must not fail the step."""
    sweep_id = (run.get("config") or {}).get("sweep")
    kick = ports.functions.get("watchdog")
    if sweep_id is None or kick is None:
        return
    try:
        kick.invoke_async({"sweep": sweep_id} if epoch is None else {"sweep": sweep_id, "epoch": epoch})
    except Exception:  # any failure of the kick is covered by the watchdog's schedule
        return


def publish_model(ports: Ports, run: dict[str, Any]) -> None:
    """Copy the model that the committed ending step (a finish, or a stop) staged to where the PredictLambda and
    `lnn` read it. Idempotent: every copy of one ending carries the same bytes. When the staged model is gone,
    `lnn resume` published it already, then removed it before it continued the run, so that no late copy of this
    ending can replace the model of a later one: nothing is copied (`copy` answers False)."""
    ports.store.copy(staged_model_key(run["run_id"], run["model_epoch"]), model_key(run["run_id"]))


def published_model(run: dict[str, Any]) -> tuple[str, int] | None:
    """(key, epoch) of the run's model, once an ending with a model committed (a finish, or a stop after an epoch;
    a run continued after its stop keeps that model until it ends again), else None. It is copied to its key just
    after that commit. (Runs of releases before `model_epoch`: a finish's model is of the run's last epoch.)"""
    final = run.get("final") or {}
    epoch = run.get("model_epoch", final.get("epochs") if final.get("model_key") else None)
    return None if epoch is None else (model_key(run["run_id"]), int(epoch))


def no_model(run: dict[str, Any]) -> str:
    """Why a run without `published_model` has none, and what gives it one (for `lnn predict` and the page)."""
    run_id, status = run["run_id"], run["status"]
    if status == "running":
        return (
            f"run {run_id} is running and has no model yet; predict after it succeeds, or stop it "
            f"(`lnn stop {run_id}`) to keep the model of its last epoch"
        )
    if status == "stopped":
        return (
            f"run {run_id} was stopped before its first epoch ended and has no model; continue it with "
            f"`lnn resume {run_id}`"
        )
    return f"run {run_id} is {status} and has no model; start a new run"


def catch_up(ports: Ports, run: dict[str, Any], *, claimant: str, context: Any = None) -> Send | None:
    """Finish what a committed step may have left undone (its crash, or a commit whose answer was lost): an ended
    run's message; a running run's next step, whose re-send this claims and returns for the delivery to make last."""
    if run["status"] == "running":
        return claim_next_send(ports, run, claimant=claimant, context=context)
    ensure_notified(ports, run, claimant=claimant, context=context)
    return None


def end_run(
    ports: Ports,
    run: dict[str, Any],
    *,
    status: str,
    reason: str,
    claimant: str,
    context: Any = None,
    unless_alive: bool = False,
    fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Move a running run to a terminal status at its current step, setting `fields` too, and notify once.
    `unless_alive`: only while its heartbeat is the one in `run` (the watchdog's judgement: a step that started
    meanwhile is alive). A stopped run keeps its `next_event`: the step `lnn resume` continues it with."""
    reason = (
        reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"
    )  # it goes into an item and a message
    fields = {
        **(fields or {}),
        "status": status,
        "reason": reason,
        "finished_at": now(),
        "ended_by": claimant,
        **({} if status == "stopped" else {"next_event": None}),
        **message_owed(),
    }
    stop_token = run.get("stop_token") if status == "stopped" and run.get("stop_requested") else None
    if not ports.table.transition(
        run["run_id"],
        seen_step=run["committed_step"],
        new_step=run["committed_step"],
        fields=fields,
        seen=run if unless_alive else None,
        stop_token=stop_token,
    ):
        latest = ports.table.get_run(run["run_id"])  # ended by a twin, or by us with the answer lost: notify once
        if latest is None or latest["status"] not in TERMINAL:
            return {"outcome": "duplicate"}
        ensure_notified(ports, latest, claimant=claimant, context=context)
        if latest.get("ended_by") != claimant:
            return {"outcome": "duplicate"}
        return {"outcome": status, "reason": reason}  # our own transition: the SDK's retry found it applied
    ensure_notified(ports, {**run, **fields}, claimant=claimant, context=context)
    return {"outcome": status, "reason": reason}


def message_owed() -> dict[str, Any]:
    """The fields of a run's ending transition that put it on the watchdog's list of messages owed."""
    return {"notified": False, MESSAGE_DUE: MESSAGE_DUE_VALUE}


def fail_run(
    ports: Ports, run: dict[str, Any], reason: str, *, claimant: str, context: Any = None, unless_alive: bool = False
) -> dict[str, Any]:
    return end_run(
        ports, run, status="failed", reason=reason, claimant=claimant, context=context, unless_alive=unless_alive
    )
