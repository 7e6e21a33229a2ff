"""Sending a run's next step exactly once in effect: the send lease, the events a step fans out to, and the
re-send of a committed step whose sender died (`ensure_next_sent`, under a conditional claim).

A trainer delivery makes its send last (`Send`, after its usage ADD): once the next step's event is accepted, only
the record that it was sent follows, so that the delivery's container is free again, and may take that event
itself, by the time Lambda dispatches it (docs/protocol.md, "The send comes last")."""

from dataclasses import dataclass
from typing import Any

from lnn_core.aws.ports import Ports
from lnn_core.aws.sdk import CLAIM_CALL_SECONDS, IoCounter
from lnn_core.ml.parameters import STAYING_WORKERS
from lnn_core.protocol.events import fit_event, shard_event, slice_event

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


MEMBERS = {"reduce": shard_event, "finish": fit_event}  # the steps K > 1 workers make, and their members' events


def fan_out(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The invocations that carry a step's event: for the reduce of a round of K > 1 workers, its K shard events
    (the shard that completes the round sends the K slice events, `slice_events`); for the finish of K > 1
    workers, its K fit events; else the event."""
    if event.get("shards", 1) > 1 and event["state"] in MEMBERS:
        return [MEMBERS[event["state"]](event, shard) for shard in range(event["shards"])]
    return [event]


def slice_events(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The K slice events of the round that the reduce `event` commits."""
    return [slice_event(event, slice_) for slice_ in range(event["shards"])]


def pending(ports: Ports, run: dict[str, Any]) -> list[dict[str, Any]]:
    """What a running run's next step still misses: of a round, the shard events whose results are not in (of
    staying workers, all K while one is missing: those in gave up waiting, and each worker makes its own slice);
    once every shard is in, the slice events whose slices are not; once every slice is in (the round uncommitted:
    its committer died), one slice event, whose delivery finds the round complete and claims its commit. Of the finish
    of K > 1 workers, the fit events whose outputs are not in, or once every one is (its committer died) one fit
    event, whose delivery finds them all in and claims the commit. For any other step, its event."""
    following = run["next_event"]
    invocations = fan_out(following)
    if len(invocations) == 1:
        return invocations
    progress = ports.table.round_progress(run["run_id"], following["step"])
    if len(progress.shards_done) < following["shards"]:
        if following["state"] == "reduce" and run["config"].get("reduce") == STAYING_WORKERS:
            return invocations  # every worker: those in the barrier waited out, and each makes its own slice
        return [event for event in invocations if event["shard"] not in progress.shards_done]
    if following["state"] == "finish":
        return invocations[:1]
    slices = slice_events(following)
    missing = [event for event in slices if event["slice"] not in progress.slices_done]
    return missing or slices[:1]


@dataclass(frozen=True)
class Send:
    """A claimed send, made by calling it: invoke the next step (a round's K shards together, `Ports.fan_out`),
    then, once every invoke was accepted, record that step `invoked_step` was sent (None: a round's slices, whose
    sending `claim_slices` guards). The caller holds the send lease (its commit's, a `claim_send`'s, or the
    slices' claim); a crash or a failed invoke in between leaves the lease to expire and a retry to re-send what
    is still `pending`."""

    run_id: str
    invocations: list[dict[str, Any]]
    invoked_step: int | None

    def __call__(self, ports: Ports) -> None:
        ports.fan_out.map(ports.invoker.invoke_async, self.invocations)
        if self.invoked_step is not None:
            ports.table.mark_invoked(self.run_id, self.invoked_step)

    def requests(self) -> IoCounter:
        """The requests the send makes, counted as the ports count them: a delivery adds its usage before them."""
        ahead = IoCounter()
        for _ in self.invocations:
            ahead.count("lambda")
        if self.invoked_step is not None:
            ahead.count("dynamodb", dynamodb_writes=1)
        return ahead


def next_send(
    run_id: str,
    event: dict[str, Any],
    invocations: list[dict[str, Any]] | None = None,
    *,
    own_shard: int | None = None,
) -> Send:
    """The send of `event`, the run's next step: its `invocations` (by default all of `fan_out(event)`). A shard
    that committed its round (`own_shard`: a round reduced in its shard) puts its own next shard event first: the
    events go out at once all the same, but where the sender's container takes the first event it sent (`lnn
    local`), that container keeps the shard whose part of the data it holds."""
    invocations = fan_out(event) if invocations is None else invocations
    if own_shard is not None:
        invocations = sorted(invocations, key=lambda invocation: invocation.get("shard") != own_shard)
    return Send(run_id, invocations, event["step"])


def send(ports: Ports, run_id: str, event: dict[str, Any]) -> None:
    """Send `event` now (the launcher's first step), under the caller's send lease."""
    next_send(run_id, event)(ports)


def claim_next_send(ports: Ports, run: dict[str, Any], *, claimant: str, context: Any = None) -> Send | None:
    """Claim the re-send of the committed next event if no delivery recorded sending it and no live lease holds
    the send (its sender crashed after the commit), and return it for the caller to make. The claim is a
    conditional write: of all twins, one re-sends."""
    following = run.get("next_event")
    if run["status"] != "running" or not following or run.get("invoked_step", 0) >= following["step"]:
        return None
    claimed = ports.table.claim_send(
        run["run_id"], run["committed_step"], claimant=claimant, now=ports.clock(), until=lease_until(ports, context)
    )
    if not claimed:
        return None
    return next_send(run["run_id"], following, pending(ports, run))


def ensure_next_sent(ports: Ports, run: dict[str, Any], *, claimant: str, context: Any = None) -> bool:
    """`claim_next_send`, and the send it claimed made at once (the launcher's repeated launch, `lnn resume`)."""
    claimed = claim_next_send(ports, run, claimant=claimant, context=context)
    if claimed is not None:
        claimed(ports)
    return claimed is not None
