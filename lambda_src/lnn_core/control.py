"""Run control shared by the trainer, the launcher, the watchdog and the `lnn` command.

Sending the next event, ending a run, notifying once, stopping and resuming: each is a small sequence of
port calls whose order is what makes the run exactly once in effect.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from . import pricing
from .errors import LnnInputError
from .events import shard_event
from .layout import model_key, staged_model_key
from .ports import CLAIM_CALL_SECONDS, MESSAGE_DUE, Ports, now
from .run_table import MESSAGE_DUE_VALUE, send_lease

TERMINAL = ("succeeded", "failed", "stopped")
MODEL_ENDINGS = ("succeeded", "stopped")  # the endings that keep a model: the finish's, or the last committed epoch's
MAX_RESUMES = 3  # a run that stalls at one step more often than this (and can have nothing in flight) is failed
MAX_REASON = 1000  # characters: a reason is stored in the run record and sent in the message
# A claim to send or to notify holds this long at most. It must end before Lambda's first retry of the claimant's
# event (1 minute after a failure), so that a crashed claimant's retry may finish the job; a concurrent twin,
# whatever its request id, finds the claim live and stops. A retry that comes sooner (Lambda retries system
# errors from about 1 s) finds the lease live too: the watchdog then re-sends (a stall) or sends the message
# (its sweep of ended runs still owed one). It must outlast one SDK call with all its attempts.
LEASE_SECONDS = 30.0
assert CLAIM_CALL_SECONDS < LEASE_SECONDS, "a claimant could outlast its lease inside one SDK call"


def lease_until(ports: Ports, context: Any) -> float:
    """When a claim taken now expires: at most `LEASE_SECONDS`, and never after the invocation's own end."""
    remaining = context.get_remaining_time_in_millis() / 1000 if hasattr(context, "get_remaining_time_in_millis") else LEASE_SECONDS
    return ports.clock() + min(LEASE_SECONDS, remaining)


def fan_out(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The invocations that carry a step's event: for the reduce of a round of K > 1 workers, its K shard events
    (the shard that completes the round sends the reduce itself); else the event."""
    if event["state"] == "reduce" and event.get("shards", 1) > 1:
        return [shard_event(event, shard) for shard in range(event["shards"])]
    return [event]


def pending(ports: Ports, run: dict[str, Any]) -> list[dict[str, Any]]:
    """What a running run's next step still misses: the shard events whose results are not in, or, once every
    shard is in, the reduce event; for any other step, its event."""
    following = run["next_event"]
    invocations = fan_out(following)
    if len(invocations) == 1:
        return invocations
    done = ports.table.shards_done(run["run_id"], following["step"])
    return [following] if len(done) == following["shards"] else [e for e in invocations if e["shard"] not in done]


def send(ports: Ports, run_id: str, event: dict[str, Any], invocations: list[dict[str, Any]] | None = None) -> None:
    """Invoke the next step (its shards, in a round), then record that it was sent. The caller holds the send lease
    (its commit's, or a `claim_send`); a crash in between leaves the lease to expire and a retry to re-send."""
    for invocation in fan_out(event) if invocations is None else invocations:
        ports.invoker.invoke_async(invocation)
    ports.table.mark_invoked(run_id, event["step"])


def ensure_next_sent(ports: Ports, run: dict[str, Any], *, claimant: str, context: Any = None) -> bool:
    """Send the committed next event if no delivery recorded sending it and no live lease holds the send
    (its sender crashed after the commit). The claim is a conditional write: of all twins, one re-sends."""
    following = run.get("next_event")
    if run["status"] != "running" or not following or run.get("invoked_step", 0) >= following["step"]:
        return False
    claimed = ports.table.claim_send(run["run_id"], run["committed_step"], claimant=claimant,
                                     now=ports.clock(), until=lease_until(ports, context))
    if not claimed:
        return False
    send(ports, run["run_id"], following, pending(ports, run))
    return True


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
    ports.table.mark_notified(run["run_id"], ending=ending)  # if this fails, end normally: a retry would publish again


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
        return (f"run {run_id} is running and has no model yet; predict after it succeeds, or stop it "
                f"(`lnn stop {run_id}`) to keep the model of its last epoch")
    if status == "stopped":
        return (f"run {run_id} was stopped before its first epoch ended and has no model; continue it with "
                f"`lnn resume {run_id}`")
    return f"run {run_id} is {status} and has no model; start a new run"


def catch_up(ports: Ports, run: dict[str, Any], *, claimant: str, context: Any = None) -> bool:
    """Finish what a committed step may have left undone (its crash, or a commit whose answer was lost)."""
    if run["status"] == "running":
        return ensure_next_sent(ports, run, claimant=claimant, context=context)
    ensure_notified(ports, run, claimant=claimant, context=context)
    return False


def end_run(ports: Ports, run: dict[str, Any], *, status: str, reason: str, claimant: str, context: Any = None,
            unless_alive: bool = False, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """Move a running run to a terminal status at its current step, setting `fields` too, and notify once.
    `unless_alive`: only while its heartbeat is the one in `run` (the watchdog's judgement: a step that started
    meanwhile is alive). A stopped run keeps its `next_event`: the step `lnn resume` continues it with."""
    reason = reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"  # it goes into an item and a message
    fields = {**(fields or {}), "status": status, "reason": reason, "finished_at": now(), "ended_by": claimant,
              **({} if status == "stopped" else {"next_event": None}), **message_owed()}
    stop_token = run.get("stop_token") if status == "stopped" and run.get("stop_requested") else None
    if not ports.table.transition(run["run_id"], seen_step=run["committed_step"], new_step=run["committed_step"],
                                  fields=fields, seen=run if unless_alive else None, stop_token=stop_token):
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


def fail_run(ports: Ports, run: dict[str, Any], reason: str, *, claimant: str, context: Any = None,
             unless_alive: bool = False) -> dict[str, Any]:
    return end_run(ports, run, status="failed", reason=reason, claimant=claimant, context=context,
                   unless_alive=unless_alive)


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
            raise LnnInputError(f"run {run_id} could not be continued: its stop is still settling (its message or "
                                f"model is being published); try `lnn resume {run_id}` again in a few seconds")
        run = latest
    while run["status"] == "running" and run.get("next_event") and not ports.table.refresh_heartbeat(
            run_id, step=run["committed_step"], now=ports.clock()):
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
        raise LnnInputError(f"run {run_id} was stopped by an earlier release of LNN, which kept no next step; "
                            "it cannot be continued: start a new run")
    until = lease_until(ports, None)
    if not run.get("notified", True):  # the stop's message is not sent: take its claim, so that no copy of the
        # stop's model (made only under that claim) can land once the run continued
        if not ports.table.claim_notification(run_id, token, now=ports.clock(), until=until,
                                              ending=run.get("continuations", 0)):
            wait = max(1, round(float(run.get("notify_lease", ports.clock())) - ports.clock()))
            raise LnnInputError(f"run {run_id}'s stop is sending its message; try `lnn resume {run_id}` again in "
                                f"{wait} s")
        if run.get("model_staged"):
            publish_model(ports, run)  # (an earlier `lnn resume` may have published it and removed its staged copy)
    if run.get("model_staged"):
        ports.store.delete_keys([staged_model_key(run_id, run["model_epoch"])])
    if not ports.table.continue_stopped(run_id, seen=run, token=token, at=ports.clock(),
                                        lease=send_lease(following["step"], claimant=token, until=until)):
        return None
    resumed = {**run, "status": "running", "invoked_step": run["committed_step"], "stop_requested": False}
    ensure_next_sent(ports, resumed, claimant=token)
    return {"run_id": run_id, "outcome": "continued", "step": following["step"],
            "epoch": run.get("progress_epoch", 0), "model_epoch": run.get("model_epoch")}


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


class Watchdog:
    """Scheduled: resumes running runs that showed no life for `stall_seconds`, at most `MAX_RESUMES` times in a row
    at one step; then waits until nothing of that step can still be in flight, and fails the run."""

    def __init__(self, ports: Ports, *, rules: StallRules, logger):
        self.ports, self.rules, self.log = ports, rules, logger

    def handle(self, event: Any = None, context: Any = None) -> dict[str, Any]:
        now_seconds = self.ports.clock()
        stalled = [self._guarded(run["run_id"], self._resume, run, now_seconds)
                   for run in self.ports.table.list_runs("running") if self.rules.stalled(run, now_seconds)]
        owed = [self._guarded(run_id, self._send_message_owed, run_id, now_seconds, context)
                for run_id in self.ports.table.runs_awaiting_message()]
        owed = [outcome for outcome in owed if outcome is not None]
        for outcome in stalled + owed:
            (self.log.error if outcome["outcome"] == "error" else self.log.warning)("watchdog", extra=outcome)
        errors = [outcome for outcome in stalled + owed if outcome["outcome"] == "error"]
        if errors:  # the invocation fails, so that its on-failure destination (the dead-letter queue) and alarm tell
            raise RuntimeError(f"the watchdog could not handle {len(errors)} run(s): {errors}")
        return {"checked_at": now(), "stalled": stalled, "messages_owed": owed}

    @staticmethod
    def _guarded(run_id: str, action, *args) -> dict[str, Any] | None:
        """`action(*args)`, or an error outcome: one run's trouble must not keep the others from their turn."""
        try:
            return action(*args)
        except Exception as error:  # noqa: BLE001 - reported, and the invocation fails after the others' turn
            return {"run_id": run_id, "outcome": "error", "reason": f"{type(error).__name__}: {error}"}

    def _resume(self, run: dict[str, Any], now_seconds: float) -> dict[str, Any]:
        run_id = run["run_id"]
        in_a_row = run.get("resumes", 0) if run.get("resumed_at_step") == run["committed_step"] else 0
        if in_a_row >= MAX_RESUMES:
            if not self.rules.nothing_in_flight(run, now_seconds):
                return {"run_id": run_id, "outcome": "waiting", "reason": "an event of its step may still be queued"}
            reason = f"stalled {in_a_row + 1} times at step {run['committed_step'] + 1}; see the trainer's logs"
            return {"run_id": run_id, **fail_run(self.ports, run, reason, claimant=f"watchdog-{uuid.uuid4().hex}",
                                                 unless_alive=True)}
        if not self.ports.table.record_resume(run_id, seen=run, resumes=in_a_row + 1, now=now_seconds,
                                              token=f"watchdog-{uuid.uuid4().hex}"):
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


FIGURES = (  # the final metrics worth showing: (key, label, format)
    ("train_accuracy", "train accuracy", "{:.1%}"),
    ("test_accuracy", "test accuracy", "{:.1%}"),
    ("train_rmse", "train RMSE", "{:.4g}"),
    ("train_r2", "train R²", "{:.3f}"),
    ("test_rmse", "test RMSE", "{:.4g}"),
    ("test_r2", "test R²", "{:.3f}"),
)


def figures(final: dict[str, Any]) -> list[tuple[str, str]]:
    """A finished run's figures as (label, text): accuracy for a classifier, RMSE and R² for a regression, and
    the epoch of an early stop."""
    shown = [(label, style.format(final[key])) for key, label, style in FIGURES if final.get(key) is not None]
    if final.get("stopped_early_at"):
        shown.append(("stopped early", f"after epoch {final['stopped_early_at']}, its cost below the threshold"))
    return shown


def warning_count(final: dict[str, Any] | None) -> str:
    """'1 warning', '3 warnings', or '' for a run whose model shows no sign of having learned nothing."""
    count = len((final or {}).get("warnings") or [])
    return f"{count} warning{'' if count == 1 else 's'}" if count else ""


def subject(run: dict[str, Any]) -> str:
    final = run.get("final") or {}
    if run["status"] == "succeeded":
        first = figures(final)[:1]
        warned = f" with {warning_count(final)}" if warning_count(final) else ""
        return (f"LNN run {run['run_id']} succeeded{warned}: cost {final.get('cost', 0):.4g}"
                + "".join(f", {l} {v}" for l, v in first))
    return f"LNN run {run['run_id']} {run['status']}"


def message_id(run: dict[str, Any]) -> str:
    """The message's idempotency key: one per ending of the run, the same in every copy of the message. A run ends
    once, unless `lnn resume` continued it after a stop: its n-th continuation's ending has its own key ('/' is
    in no run id, so no key is another run's)."""
    continuations = run.get("continuations", 0)
    return f"lnn-run-{run['run_id']}" + (f"/continued-{continuations}" if continuations else "")


def message(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run["run_id"],
        "status": run["status"],
        "seed": (run.get("config") or {}).get("seed"),  # with the data and the config, it replays the run exactly
        "reason": run.get("reason"),
        "final": run.get("final"),
        "config": run.get("config"),
        "created_at": run.get("created_at"),
        "finished_at": run.get("finished_at"),
        "aws_cost": pricing.cost_text(pricing.run_cost(run)),  # the deliveries before the one that sends this
    }


def _existing(ports: Ports, run_id: str) -> dict[str, Any]:
    run = ports.table.get_run(run_id)
    if run is None:
        raise LnnInputError(f"no run named {run_id!r}; `lnn runs` lists them")
    return run
