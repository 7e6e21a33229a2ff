"""How LNN calls AWS: the SDK's retries and timeouts (those of calls under a lease end inside it), the counter
of requests and bytes every adapter keeps (with the trace of each request's start and end, from which a delivery's
sequential round trips are counted), and the timestamp every record carries."""

import contextvars
import itertools
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config

BOTO_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 5}, connect_timeout=5, read_timeout=60)

# The clients whose calls a lease covers (DynamoDB, SNS, Lambda): every attempt and back-off of one call ends
# well inside the 30 s lease (protocol.sending.LEASE_SECONDS), so a live claimant cannot outlast its own lease inside an
# SDK call. S3 keeps BOTO_CONFIG: large objects. Its one call under a lease is the winner's best-effort cleanup delete
# before its send (`Trainer._delete_obsolete`): one that outlasts the lease lets a twin re-send the next step too, a
# duplicate event that `mark_started` or the commit drops (docs/protocol.md, "The send comes last").
CLAIM_ATTEMPTS, CLAIM_CONNECT_SECONDS, CLAIM_READ_SECONDS = 3, 2, 6
CLAIM_BACKOFF_SECONDS = 1 + 2  # botocore's standard mode waits at most 2**(attempt - 1) s before retry `attempt`
CLAIM_CALL_SECONDS = CLAIM_ATTEMPTS * (CLAIM_CONNECT_SECONDS + CLAIM_READ_SECONDS) + CLAIM_BACKOFF_SECONDS
# `total_max_attempts`, not `max_attempts`: botocore reads the latter as retries, one attempt more.
CLAIM_BOTO_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": CLAIM_ATTEMPTS},
    connect_timeout=CLAIM_CONNECT_SECONDS,
    read_timeout=CLAIM_READ_SECONDS,
)

PRICED = ("dynamodb_writes", "dynamodb_item_units", "s3_reads", "s3_deletes")
TRACE_LIMIT = 4096  # requests whose times a counter keeps: far more than one delivery makes
# The wave of requests being sent together, if any (`ports.RequestFanOut` sets it in the context its calls run in)
WAVE: contextvars.ContextVar[object | None] = contextvars.ContextVar("lnn-request-wave", default=None)


@dataclass
class IoCounter:
    """AWS requests by service, and bytes moved to and from S3; safe to count from several threads (a delivery's
    concurrent requests, `ports.RequestFanOut`). The `trace` holds each SDK request's (service, start, end, wave)
    in `time.monotonic()` seconds, recorded by `trace_requests` and the local runtime's invoker."""

    requests: Counter = field(default_factory=Counter)
    s3_bytes_in: int = 0
    s3_bytes_out: int = 0
    # What prices apart within a service's requests (pricing.run_cost): DynamoDB's writes (the rest are reads) and
    # the write units of the epoch items they carry; S3's GETs and HEADs, and its deletes (free).
    priced: Counter = field(default_factory=lambda: Counter(dict.fromkeys(PRICED, 0)))
    trace: deque = field(default_factory=lambda: deque(maxlen=TRACE_LIMIT), repr=False)
    traced: int = 0  # requests ever traced (the trace keeps the last TRACE_LIMIT)
    _lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, service: str, **priced: int) -> None:
        """One request to `service`, and what prices apart in it (`PRICED`)."""
        with self._lock:
            self.requests[service] += 1
            for name, value in priced.items():
                self.priced[name] += value

    def add_bytes(self, *, s3_in: int = 0, s3_out: int = 0) -> None:
        with self._lock:
            self.s3_bytes_in += s3_in
            self.s3_bytes_out += s3_out

    def record(self, service: str, started: float, ended: float) -> None:
        """A request's time span, and the wave it was sent in (`WAVE`), for `round_trips`."""
        with self._lock:
            self.trace.append((service, started, ended, WAVE.get()))
            self.traced += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "s3_bytes_in": self.s3_bytes_in,
                "s3_bytes_out": self.s3_bytes_out,
                "priced": dict(self.priced),
                "traced": self.traced,
            }

    def since(self, earlier: dict[str, Any]) -> dict[str, Any]:
        """What was counted after `earlier` (a `snapshot()`), with the sequential round trips of its requests."""
        with self._lock:
            requests = Counter(self.requests)
            requests.subtract(earlier["requests"])
            spans = self._spans_after(earlier)
            return {
                "requests": {service: count for service, count in requests.items() if count},
                "s3_bytes_in": self.s3_bytes_in - earlier["s3_bytes_in"],
                "s3_bytes_out": self.s3_bytes_out - earlier["s3_bytes_out"],
                "priced": {name: self.priced[name] - earlier["priced"].get(name, 0) for name in PRICED},
                "round_trips": round_trips(spans),
            }

    def spans_since(self, earlier: dict[str, Any]) -> list[tuple]:
        """The (service, start, end, wave) of each request traced after `earlier` (a `snapshot()`), oldest first."""
        with self._lock:
            return self._spans_after(earlier)

    def _spans_after(self, earlier: dict[str, Any]) -> list[tuple]:
        new = min(self.traced - earlier.get("traced", self.traced), len(self.trace))
        return list(itertools.islice(reversed(self.trace), new))[::-1]  # the newest only, not a copy of the trace


def round_trips(spans: list[tuple]) -> dict[str, int]:
    """The sequential round trips of requests (service, start, end[, wave]), by service: the longest chain of them
    each of which started after the previous one ended. The requests of one wave (sent together by one fan-out)
    are one span, from the first's start to the last's end (a local invoke, a mere enqueue, ends before the
    next thread starts the next); requests that overlap in time count as one; K requests one after another, K."""
    merged: dict[tuple, list[float]] = {}
    for index, (service, started, ended, *wave) in enumerate(spans):
        key = (service, wave[0]) if wave and wave[0] is not None else (service, index)
        span = merged.setdefault(key, [started, ended])
        span[0], span[1] = min(span[0], started), max(span[1], ended)
    chains: dict[str, int] = {}
    for service in sorted({key[0] for key in merged}):
        chain, free_at = 0, float("-inf")
        spans_of_service = [span for key, span in merged.items() if key[0] == service]
        for started, ended in sorted(spans_of_service, key=lambda span: span[1]):
            if started >= free_at:  # earliest end first: the longest chain of disjoint spans (greedy is optimal)
                chain, free_at = chain + 1, ended
        chains[service] = chain
    return chains


def trace_requests(client, counter: IoCounter):
    """Record every API call of a boto3 client in `counter`'s trace: its start and end (after the SDK's retries), by
    the hooks botocore emits around each call; the call's own context carries its start. Returns the client (a
    stand-in without botocore's events, as the simulator's direct clients, untraced)."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is None:
        return client
    service = client.meta.service_model.service_name

    def started(context, **_):
        context["lnn_started"] = time.monotonic()

    def ended(context, **_):
        if "lnn_started" in context:
            counter.record(service, context.pop("lnn_started"), time.monotonic())

    events.register("before-call", started, unique_id=f"lnn-trace-start-{id(counter)}")
    events.register("after-call", ended, unique_id=f"lnn-trace-end-{id(counter)}")
    events.register("after-call-error", ended, unique_id=f"lnn-trace-error-{id(counter)}")
    return client


def now() -> str:
    """UTC time as ISO 8601 with milliseconds."""
    seconds = time.time()  # one reading: two could straddle a second and go back in time
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"
