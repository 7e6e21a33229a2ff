"""Sending a run's next step exactly once in effect: the send lease, the events a step fans out to, and the
re-send of a committed step whose sender died (`ensure_next_sent`, under a conditional claim)."""

from typing import Any

from lnn_core.aws.ports import Ports
from lnn_core.aws.sdk import CLAIM_CALL_SECONDS
from lnn_core.protocol.events import shard_event

# A claim to send or to notify holds this long at most. It must end before Lambda's first retry of the claimant's
# event (1 minute after a failure), so that a crashed claimant's retry may finish the job; a concurrent twin,
# whatever its request id, finds the claim live and stops. A retry that comes sooner (Lambda retries system
# errors from about 1 s) finds the lease live too: the watchdog then re-sends (a stall) or sends the message
# (its sweep of ended runs still owed one). It must outlast one SDK call with all its attempts.
LEASE_SECONDS = 30.0


assert CLAIM_CALL_SECONDS < LEASE_SECONDS, "a claimant could outlast its lease inside one SDK call"


def lease_until(ports: Ports, context: Any) -> float:
    """When a claim taken now expires: at most `LEASE_SECONDS`, and never after the invocation's own end."""
    remaining = (
        context.get_remaining_time_in_millis() / 1000
        if hasattr(context, "get_remaining_time_in_millis")
        else LEASE_SECONDS
    )
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
    """Invoke the next step (a round's K shards together, `Ports.fan_out`), then, once every invoke was accepted,
    record that it was sent. The caller holds the send lease (its commit's, or a `claim_send`); a crash or a failed
    invoke in between leaves the lease to expire and a retry to re-send what is still `pending`."""
    ports.fan_out.map(ports.invoker.invoke_async, fan_out(event) if invocations is None else invocations)
    ports.table.mark_invoked(run_id, event["step"])


def ensure_next_sent(ports: Ports, run: dict[str, Any], *, claimant: str, context: Any = None) -> bool:
    """Send the committed next event if no delivery recorded sending it and no live lease holds the send
    (its sender crashed after the commit). The claim is a conditional write: of all twins, one re-sends."""
    following = run.get("next_event")
    if run["status"] != "running" or not following or run.get("invoked_step", 0) >= following["step"]:
        return False
    claimed = ports.table.claim_send(
        run["run_id"], run["committed_step"], claimant=claimant, now=ports.clock(), until=lease_until(ports, context)
    )
    if not claimed:
        return False
    send(ports, run["run_id"], following, pending(ports, run))
    return True
