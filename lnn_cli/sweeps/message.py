"""The one SNS message at the end of a sweep: its best trial and what the sweep cost.

Whoever finds the sweep done (`lnn sweep status|results`, the end of `lnn local --sweep`, the page) may send it; a
conditional claim decides who does, as a run's ending claims its message: `runs/<sweep>/sweep-message.json` created
only if absent (If-None-Match), then the message, then the claim marked sent (If-Match on the claim's ETag). A claim
never marked sent (its claimant died between the claim and the mark) may be taken over after `LEASE_SECONDS`
(If-Match on the stale claim, so only one taker wins); the message carries the same `message_id` in every copy, by
which a subscriber drops the copy a takeover could repeat.
"""

import json
import time
import uuid
from typing import Any

from botocore.exceptions import ClientError

from lnn_cli.sweeps.record import SweepRecord
from lnn_cli.sweeps.table import TrialRow, best, metric_names, totals

LEASE_SECONDS = 60.0
CONDITION_FAILED = ("PreconditionFailed", "ConditionalRequestConflict")


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


def notify_if_done(s3, bucket: str, notifier, record: SweepRecord, rows: list[TrialRow], *, clock=time.time) -> bool:
    """Send the sweep's message if the sweep is done and no one has (or a claim on it went stale); True if this
    call sent it."""
    if not totals(record, rows, clock())["done"]:
        return False
    key, claimant = message_key(record.sweep_id), uuid.uuid4().hex
    claim = json.dumps({"claimant": claimant, "claimed_at": clock(), "sent": False}).encode()
    try:
        etag = s3.put_object(Bucket=bucket, Key=key, Body=claim, IfNoneMatch="*")["ETag"]
    except ClientError as error:
        if error.response["Error"]["Code"] not in CONDITION_FAILED:
            raise
        etag = _take_over_stale(s3, bucket, key, claim, clock())
        if etag is None:
            return False
    body = message_body(record, rows, clock())
    notifier.publish(subject=subject(body), body=body, status="sweep_done", message_id=f"lnn-sweep-{record.sweep_id}")
    try:
        s3.put_object(
            Bucket=bucket,
            Key=key,
            IfMatch=etag,
            Body=json.dumps({"claimant": claimant, "sent": True, "sent_at": clock()}).encode(),
        )
    except ClientError as error:  # taken over meanwhile: the taker sends the same message id
        if error.response["Error"]["Code"] not in CONDITION_FAILED:
            raise
    return True


def _take_over_stale(s3, bucket: str, key: str, claim: bytes, now: float) -> str | None:
    """The ETag of our claim if the existing one is unsent and older than the lease, and we replaced it first."""
    current = s3.get_object(Bucket=bucket, Key=key)
    state = json.loads(current["Body"].read())
    if state.get("sent") or now - state.get("claimed_at", now) < LEASE_SECONDS:
        return None
    try:
        return s3.put_object(Bucket=bucket, Key=key, Body=claim, IfMatch=current["ETag"])["ETag"]
    except ClientError as error:
        if error.response["Error"]["Code"] in CONDITION_FAILED:
            return None
        raise
