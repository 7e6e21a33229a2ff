"""The delivery queue and its clock.

The delivery clock is virtual: a delivery takes `STEP_SECONDS` of it, a retry waits its back-off on it, a chaos
delay holds a delivery back on it; no real time is waited. The handlers' clock (`DeliveryClock.now`, epoch
seconds) is the wall clock plus the time the delivery clock ran ahead of real time, so that a virtual wait
(a 1-minute retry back-off) is seen by a handler's lease or stall judgement as it would be in AWS.
"""

import heapq
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(order=True)
class Delivery:
    due: float
    sequence: int
    function: Any = field(compare=False)  # LocalFunction
    payload: str = field(compare=False)  # the event's JSON: every delivery decodes its own copy
    request_id: str = field(compare=False)
    enqueued_at: float = field(compare=False)
    attempt: int = field(default=0, compare=False)
    chain: int = field(default=0, compare=False)  # one per delivered copy; its retries share it
    sender: Any = field(default=None, compare=False)  # the Container whose delivery invoked it, while offered to it
    offered_until: float = field(default=0.0, compare=False)  # time.monotonic() the offer to `sender` ends

    @property
    def event(self) -> Any:
        return json.loads(self.payload)

    def offered_to(self, now: float) -> Any:
        """The container this delivery is offered to at real time `now` (`time.monotonic()`), or None."""
        return self.sender if self.sender is not None and now < self.offered_until else None


class DeliveryClock:
    """The virtual delivery clock (`virtual`, seconds from the runtime's start) and the handlers' clock (`now`).

    `now()` = wall clock at the start + real time elapsed + the virtual time that ran ahead of real time: every
    advance of the delivery clock by more than the real time since the previous advance adds the difference. So
    between two instants the handlers' clock moves at least as far as the delivery clock and as real time.
    Monotonic and thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self.virtual = 0.0
        self._wall_start, self._real_start = time.time(), time.monotonic()
        self._synced = self._real_start
        self._ahead = 0.0
        self._last = self._wall_start

    def advance_to(self, virtual: float) -> None:
        with self._lock:
            if virtual <= self.virtual:
                return
            real = time.monotonic()
            self._ahead += max(0.0, (virtual - self.virtual) - (real - self._synced))
            self.virtual, self._synced = virtual, real

    def now(self) -> float:
        with self._lock:
            self._last = max(self._last, self._wall_start + (time.monotonic() - self._real_start) + self._ahead)
            return self._last


class DeliveryQueue:
    """Deliveries by due time, then by the order they were queued. Not locked: the runtime holds its lock."""

    def __init__(self):
        self._heap: list[Delivery] = []
        self._sequence = itertools.count()
        self._chains = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def new_chain(self) -> int:
        return next(self._chains)

    def push(
        self,
        function,
        payload: str,
        request_id: str,
        *,
        due: float,
        enqueued_at: float,
        chain: int,
        attempt: int = 0,
        sender=None,
        offered_until: float = 0.0,
    ) -> None:
        delivery = Delivery(
            due, next(self._sequence), function, payload, request_id, enqueued_at, attempt, chain, sender, offered_until
        )
        heapq.heappush(self._heap, delivery)

    def direct(self, function, payload: str, request_id: str, now: float) -> Delivery:
        """A delivery outside the queue (a RequestResponse invoke), numbered in the same sequence."""
        return Delivery(now, next(self._sequence), function, payload, request_id, now)

    def pop(self) -> Delivery:
        return heapq.heappop(self._heap)

    def in_order(self) -> list[Delivery]:
        return sorted(self._heap)

    def remove(self, delivery: Delivery) -> None:
        self._heap.remove(delivery)
        heapq.heapify(self._heap)
