"""`make bench`'s arithmetic on a run's records: its epoch items' times (the epochs' own time, the intervals
between epochs, each epoch's span), cost lists' agreement, and its trainer deliveries' requests and S3 bytes, by
state and per round."""

from collections import defaultdict
from datetime import UTC, datetime
from statistics import median

from lnn_core.aws.sdk import round_trips


def timestamp_seconds(stamp: str) -> float:
    """An epoch item's ISO 8601 UTC time (millisecond resolution) in seconds since 1970."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def training_seconds(items: list[dict]) -> float | None:
    """The epochs' own time, from each epoch item's started_at to its finished_at (the epoch's mini-batches, its
    checks and its item): the run's time less the launch, the data loading, the commits, the invocations and the
    finish."""
    spans = [
        timestamp_seconds(item["finished_at"]) - timestamp_seconds(item["started_at"])
        for item in items
        if item.get("started_at") and item.get("finished_at")
    ]
    # a stamp's milliseconds and its seconds are read apart (`ports.now`), so one can be a second off: no figure then
    return sum(spans) if spans and len(spans) == len(items) and min(spans) >= 0 else None


def epoch_intervals(items: list[dict]) -> list[float]:
    """Seconds between consecutive epoch items' `finished_at`: one epoch each, at steady state (the first epoch,
    which loads the data, and the launch before it are not in any interval)."""
    stamps = [timestamp_seconds(item["finished_at"]) for item in items]
    return [later - earlier for earlier, later in zip(stamps, stamps[1:])]


def epoch_spans(items: list[dict]) -> list[float]:
    """Each epoch item's `started_at` to `finished_at`: at K = 1 and granularity epoch, the epoch's compute (its
    `train_epoch`, the finiteness check and the item); at K > 1 only the reduce's item."""
    return [timestamp_seconds(item["finished_at"]) - timestamp_seconds(item["started_at"]) for item in items]


def relative_difference(costs: list[float], reference: list[float]) -> float:
    """The largest |a - b| / |b| over two equally long cost lists (inf when their lengths differ)."""
    if len(costs) != len(reference) or not costs:
        return float("inf")
    return max(abs(a - b) / abs(b) for a, b in zip(costs, reference))


def delivery_summary(deliveries: list, data_bytes: int = 0) -> dict[str, dict]:
    """Per trainer state ("start", "shard", "slice", "finish"...): deliveries, their mean seconds, and their
    requests by service and S3 bytes, summed, less the data loads: a delivery that read at least `data_bytes`
    (> 0) is its container's first, which GETs the run's .npz; those are counted apart (`data_loads`)."""
    summary: dict[str, dict] = {}
    for delivery in deliveries:
        if delivery.role != "trainer":
            continue
        state = (delivery.result or {}).get("state", "error" if delivery.error else "?")
        entry = summary.setdefault(
            state,
            {
                "deliveries": 0,
                "seconds": 0.0,
                "requests": defaultdict(int),
                "s3_bytes_in": 0,
                "s3_bytes_out": 0,
                "data_loads": 0,
            },
        )
        entry["deliveries"] += 1
        entry["seconds"] += delivery.seconds
        for service, count in delivery.io["requests"].items():
            entry["requests"][service] += count
        entry["s3_bytes_in"] += delivery.io["s3_bytes_in"]
        entry["s3_bytes_out"] += delivery.io["s3_bytes_out"]
        if data_bytes and delivery.io["s3_bytes_in"] >= data_bytes:
            entry["data_loads"] += 1
            entry["requests"]["s3"] -= 1
            entry["s3_bytes_in"] -= data_bytes
    for entry in summary.values():
        entry["mean_seconds"] = round(entry.pop("seconds") / entry["deliveries"], 4)
        entry["requests"] = dict(sorted(entry["requests"].items()))
    return summary


def per_round(summary: dict[str, dict], rounds: int, workers: int) -> dict:
    """Requests by service and S3 bytes per round of the training deliveries: at K = 1 the epoch steps (their
    state is "start"), at K > 1 the shards and the slices, one of which commits (the launch, K > 1's start step
    and the finish are not rounds)."""
    states = ("start",) if workers == 1 else ROUND_STATES
    requests: dict[str, float] = defaultdict(float)
    moved = {"s3_bytes_in": 0, "s3_bytes_out": 0}
    loads = 0
    for state in states:
        entry = summary.get(state)
        if entry is None:
            continue
        for service, count in entry["requests"].items():
            requests[service] += count / rounds
        for key in moved:
            moved[key] += entry[key] / rounds
        loads += entry.get("data_loads", 0)
    return {
        "requests": {service: round(count, 3) for service, count in sorted(requests.items())},
        **{key: round(value) for key, value in moved.items()},
        "data_loads": loads,
    }


STORAGE_OR_INVOKE = ("s3", "lambda")
ROUND_STATES = ("shard", "slice")  # the deliveries of a round of K > 1 workers, in their order


def round_trips_per_round(deliveries: list, workers: int) -> dict:
    """The sequential round trips of each round, from the deliveries' traces (`IoCounter.since`'s `round_trips`:
    requests sent together count once): at K = 1 its epoch step's, at K > 1 the most of its shards' (they run side
    by side) plus the most of its slices' (the committing slice's, as a rule), split into S3 and Lambda requests
    ("storage or invoke") and DynamoDB requests.
    A delivery counts all its requests, those after its last invoke too: an upper bound of the round's critical
    path. Returns the mean and the most over the rounds, and the number of rounds."""
    rounds: dict[tuple, dict[str, list]] = defaultdict(lambda: {state: [] for state in ROUND_STATES})
    for delivery in deliveries:
        result = delivery.result or {}
        if delivery.role != "trainer" or result.get("state") not in ("start", *ROUND_STATES):
            continue
        if (result["state"] == "start") != (workers == 1):
            continue
        trips = delivery.io.get("round_trips", {})
        pair = (sum(trips.get(service, 0) for service in STORAGE_OR_INVOKE), trips.get("dynamodb", 0))
        kind = "slice" if result["state"] == "start" else result["state"]  # K = 1's epoch step: a round's one part
        rounds[(result.get("epoch"), result.get("batch"))][kind].append(pair)
    totals = []
    for entry in rounds.values():
        most = [tuple(max(pair[i] for pair in pairs) for i in (0, 1)) if pairs else (0, 0) for pairs in entry.values()]
        totals.append((most[0][0] + most[1][0], most[0][1] + most[1][1]))
    if not totals:
        return {"rounds": 0}

    def summary(i: int) -> dict:
        values = [total[i] for total in totals]
        return {"mean": round(sum(values) / len(values), 2), "most": max(values)}

    return {"rounds": len(totals), "storage_or_invoke": summary(0), "dynamodb": summary(1)}


def committing_path(deliveries: list, workers: int) -> dict:
    """Where the delivery that commits a round spends its time (at K = 1 the epoch step, at K > 1 the shard or
    slice whose commit ends the round), from each one's request spans (`DeliveryRecord.spans`), as medians over the
    given deliveries: its seconds, the step body's compute (the longest stretch without a request in flight), the
    time before it, and the time after it (the commit's path: its sequential round trips by service, as
    `sdk.round_trips` counts them, and the part of it spent waiting on requests). Each figure is its own median, so
    the parts need not add up to the seconds. The compute lies between two requests (the step's fence and its first
    write): time before the first request or after the last is never counted as compute."""
    states = ("start",) if workers == 1 else ROUND_STATES
    rows = []
    for delivery in deliveries:
        result = delivery.result or {}
        if delivery.role != "trainer" or result.get("state") not in states or result.get("outcome") != "committed":
            continue
        busy = _busy_intervals(delivery.spans)
        if not busy:
            continue
        gaps = [(later[0] - earlier[1], earlier[1], later[0]) for earlier, later in zip(busy, busy[1:])]
        compute, compute_start, compute_end = max(gaps, default=(0.0, busy[0][1], busy[0][1]))
        after = [span for span in delivery.spans if span[1] >= compute_end]
        rows.append(
            {
                "seconds": delivery.seconds,
                "before": compute_start,
                "compute": compute,
                "after": delivery.seconds - compute_end,
                "after_requests": sum(end - start for start, end in _busy_intervals(after)),
                "after_round_trips": round_trips(after),
            }
        )
    if not rows:
        return {"deliveries": 0}
    services = sorted({service for row in rows for service in row["after_round_trips"]})
    return {
        "deliveries": len(rows),
        **{key: round(median(row[key] for row in rows), 4) for key in SPAN_KEYS},
        "after_round_trips": {
            service: median(row["after_round_trips"].get(service, 0) for row in rows) for service in services
        },
    }


SPAN_KEYS = ("seconds", "before", "compute", "after", "after_requests")


def _busy_intervals(spans: list[tuple]) -> list[tuple[float, float]]:
    """The union of the spans' (start, end) times, as disjoint intervals in time order."""
    merged: list[list[float]] = []
    for _service, start, end, *_wave in sorted(spans, key=lambda span: span[1]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]
