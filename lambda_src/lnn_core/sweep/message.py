"""The one SNS message at the end of a sweep: its best trial and what the sweep cost.

Whoever reconciles the sweep and finds it done (the watchdog, kicked by the last trial's end or on its schedule;
`lnn sweep status|results`; the end of `lnn local --sweep`) may send it; a conditional claim decides who does, as a
run's ending claims its message: `runs/<sweep>/sweep-message.json` created only if absent (If-None-Match), then the
message, then the claim marked sent (If-Match on the claim's ETag). A claim never marked sent (its claimant died
between the claim and the mark) may be taken over after `LEASE_SECONDS` (If-Match on the stale claim, so only one
taker wins); the message carries the same `message_id` in every copy, by which a subscriber drops the copy a
takeover could repeat.
"""

import json
import uuid
from typing import Any

from lnn_core.aws.ports import Ports
from lnn_core.sweep.record import SweepRecord
from lnn_core.sweep.results import TrialRow, best, metric_names, totals

LEASE_SECONDS = 60.0


def message_key(sweep_id: str) -> str:
    return f"runs/{sweep_id}/sweep-message.json"


def message_body(record: SweepRecord, rows: list[TrialRow], clock: float) -> dict[str, Any]:
    total = totals(record, rows, clock)
    top = best(rows)
    validation, test = metric_names(rows)
    best_trial = None
    if top is not None:
        best_trial = {
            "run_id": top.trial["run_id"],
            "varied": top.trial["varied"],
            "cost": top.cost,
            **{name: top.final.get(name) for name in (validation, test) if name},
        }
    return {
        "sweep_id": record.sweep_id,
        "status": "done",
        "trials": len(rows),
        "counts": total["counts"],
        "best": best_trial,
        "seconds": round(total["seconds"], 3),
        "dollars": total["dollars"],
        "created_at": record.created_at,
    }


def subject(body: dict[str, Any]) -> str:
    best_trial = body["best"]
    dollars = "" if body["dollars"] is None else f", ${body['dollars']:.4f}"
    return f"LNN sweep {body['sweep_id']} done: {body['trials']} trials{dollars}" + (
        f", best {best_trial['run_id']}" if best_trial else ", no trial with a model"
    )


def notify_if_done(ports: Ports, record: SweepRecord, rows: list[TrialRow]) -> bool:
    """Send the sweep's message if the sweep is done and no one has (or a claim on it went stale); True if this
    call sent it."""
    if not totals(record, rows, ports.clock())["done"]:
        return False
    store, key, claimant = ports.store, message_key(record.sweep_id), uuid.uuid4().hex
    claim = json.dumps({"claimant": claimant, "claimed_at": ports.clock(), "sent": False}).encode()
    etag = store.put_if(key, claim, etag=None)
    if etag is None:
        etag = _take_over_stale(ports, key, claim)
        if etag is None:
            return False
    body = message_body(record, rows, ports.clock())
    ports.notifier.publish(
        subject=subject(body), body=body, status="sweep_done", message_id=f"lnn-sweep-{record.sweep_id}"
    )
    # If taken over meanwhile (None), the taker sends the same message id.
    store.put_if(key, json.dumps({"claimant": claimant, "sent": True, "sent_at": ports.clock()}).encode(), etag=etag)
    return True


def message_sent(ports: Ports, sweep_id: str) -> bool:
    """Whether the sweep's message is recorded as sent."""
    current = ports.store.read_current(message_key(sweep_id))
    return current is not None and bool(json.loads(current.data).get("sent"))


def _take_over_stale(ports: Ports, key: str, claim: bytes) -> str | None:
    """The ETag of our claim if the existing one is unsent and older than the lease, and we replaced it first."""
    current = ports.store.read_current(key)
    if current is None:  # removed meanwhile: claim afresh
        return ports.store.put_if(key, claim, etag=None)
    state, now = json.loads(current.data), ports.clock()
    if state.get("sent") or now - state.get("claimed_at", now) < LEASE_SECONDS:
        return None
    return ports.store.put_if(key, claim, etag=current.etag)
