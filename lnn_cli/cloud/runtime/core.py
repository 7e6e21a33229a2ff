"""The local Lambda runtime: the stack's functions (trainer, launcher, watchdog, predictor), their containers, and one
delivery queue. The predictor is only ever invoked synchronously (`invoke`).

Each function gets `concurrency` warm containers (`containers`), built by `lnn_core.handlers` with the function's
deployed environment (read from the emulator's `GetFunctionConfiguration`), the caller's boto3 session, a logger
writing to the runtime's log, an invoker that enqueues here, and the handlers' clock (`now`). Only the invoke
transport differs from AWS (`semantics`): the event's JSON round trip and 1 MB limit, the context, retries with
one request id, the event age, the on-failure destination.

Deliveries are taken from the queue in order of the delivery clock (`queue`). At concurrency 1 they run one at a
time in the caller's thread: a deterministic order (a chaos seed is a schedule). At concurrency N each function
has N containers and ready deliveries run in threads, each container running one delivery at a time, so that a
duplicate runs at the same time as its twin. Then each AWS request is atomic (`atomic`) and the handlers' BLAS
calls use at most `container_cpus` threads each, and an event a trainer delivery invokes is first offered to that
delivery's container (`SENDER_OFFER_SECONDS`), as Lambda's hop lets the sender's idle environment take it.
"""

import contextlib
import io
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import boto3

from lnn_cli.cloud.runtime.containers import Container, LocalFunction, LockedStream, build_handler, describe
from lnn_cli.cloud.runtime.execution import DeliveryExecution, DeliveryRecord
from lnn_cli.cloud.runtime.queue import Delivery, DeliveryClock, DeliveryQueue
from lnn_cli.cloud.runtime.semantics import (
    SENDER_OFFER_SECONDS,
    STEP_SECONDS,
    decode_response,
    encode_event,
    retry_backoff,
)
from lnn_core.aws.ports import CONCURRENT_REQUESTS, FUNCTION_ENVIRONMENT, RequestFanOut
from lnn_core.aws.sdk import IoCounter

IDLE_WAIT_SECONDS = 0.001  # the real pause of a wait whose virtual time the clocks skipped: the others' turn
IDLE_WAIT_STEP = 1.0  # virtual seconds a wait skips at least when every delivery in flight waits
LOCAL_POLL_SECONDS = 0.005  # a wait's real pause at least: the emulator serves every delivery's requests one at a time


class Faults(Protocol):
    """Fault injection (the chaos harness); the runtime works without one."""

    def instrument(self, role: str, handler: Any) -> None: ...

    def schedule(self, function: LocalFunction, payload: str) -> list:
        """The deliveries of one async invoke: [0.0] normally, [] when lost. Each is a delay (delivery-clock
        seconds; the copy shares the invoke's request id) or a (delay, own_request_id) pair."""
        ...

    def begin(self, delivery: Delivery, retries_left: int) -> None: ...


class LocalInvoker:
    """The `Invoker` port for one target function: an async invoke enqueues a delivery. It counts the invoke in the
    caller's `IoCounter`, as `LambdaInvoker` does, so that a run's request counts are those it would make in AWS."""

    def __init__(self, runtime: "LocalLambdaRuntime", target: LocalFunction):
        self._runtime, self._target = runtime, target
        self.function_name = target.name
        self.counter: IoCounter | None = None  # the calling handler's, set once its ports exist
        self.sender: Container | None = None  # the calling container, when it is one of the target's own

    def invoke_async(self, payload: dict[str, Any]) -> None:
        started = time.monotonic()
        self._runtime.invoke_async(self._target, payload, sender=self.sender)
        if self.counter is not None:
            self.counter.count("lambda")
            self.counter.record("lambda", started, time.monotonic())


class LocalLambdaRuntime(DeliveryExecution):
    """Runs the stack's three functions from one queue; see the module's docstring for the semantics."""

    def __init__(
        self,
        session: boto3.Session,
        functions: dict[str, str],
        *,
        log_stream=None,
        faults: Faults | None = None,
        on_delivery: Callable[[DeliveryRecord], None] | None = None,
        concurrency: int = 1,
        container_cpus: int | None = 1,
    ):
        """`functions` maps a role (trainer, launcher, watchdog) to the deployed function's name; the handlers' logs
        go to `log_stream` (by default, kept in memory with the runtime). `concurrency` is the containers per
        function; `container_cpus` caps the BLAS threads of each BLAS call (None: no cap)."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1; got {concurrency}")
        self.session, self.faults, self.on_delivery = session, faults, on_delivery
        self.concurrency, self.container_cpus = concurrency, container_cpus
        self._log_stream = LockedStream(log_stream or io.StringIO())
        self._lock = threading.Condition(threading.RLock())  # the queue, the containers, the records
        self._callback_lock = threading.Lock()  # on_delivery is called by one thread at a time
        self._queue = DeliveryQueue()
        self._clock = DeliveryClock()
        self._in_flight = 0
        self._waiting: set[int] = set()  # the delivery threads that wait for their peers (`waiting`)
        self._offer_ends: float | None = None  # when the first offer `_pick` last skipped ends (time.monotonic())
        self._worker_error: BaseException | None = None
        self._clients: dict[str, Any] = {}
        self.deliveries: list[DeliveryRecord] = []
        self.failed_events: list[dict[str, Any]] = []  # destination records of events that were given up
        self._blas = _blas_controller() if container_cpus is not None else None
        lambda_client = session.client("lambda")
        self.functions = {
            role: describe(lambda_client, role, name, session.region_name) for role, name in functions.items()
        }
        self._by_name = {function.name: function for function in self.functions.values()}
        for function in self.functions.values():
            for index in range(concurrency):
                self._build(function, index)

    # ---- set-up --------------------------------------------------------------------------------------------

    def _build(self, function: LocalFunction, index: int) -> None:
        """A warm container: its own handler object, ports, counter and invoker."""
        # The trainer invokes itself; the launcher and the watchdog invoke the function their environment names.
        target = self._by_name[function.environment.get("LNN_TRAINER_FUNCTION", function.name)]
        invoker = LocalInvoker(self, target)
        # and the other functions its environment names (the trainer's kick of the watchdog, the watchdog's launches)
        others = {
            role: LocalInvoker(self, self._by_name[function.environment[name]])
            for role, name in FUNCTION_ENVIRONMENT.items()
            if function.environment.get(name) in self._by_name
        }
        handler = build_handler(
            function,
            session=self.session,
            invoker=invoker,
            functions=others,
            clock=self.now,
            log_stream=self._log_stream,
        )
        for each in (invoker, *others.values()):
            each.counter = handler.ports.counter
        # a delivery's independent requests: together, as in Lambda, when deliveries run in threads; one after
        # another at concurrency 1, where a chaos seed is a schedule
        if hasattr(handler.ports, "fan_out"):  # the predictor's ports have none: it sends one request at a time
            handler.ports.fan_out = RequestFanOut(CONCURRENT_REQUESTS if self.concurrency > 1 else 1)
            handler.ports.wait, handler.ports.waiting = self.wait, self.waiting
        container = Container(index, handler, handler.ports.counter)
        function.containers.append(container)
        if target is function and self.concurrency > 1:  # the trainer's next step: offered to this container first
            invoker.sender = container
        if self.faults is not None:
            self.faults.instrument(function.role, handler)

    def handler(self, role: str) -> Any:
        return self.functions[role].handler

    def counters(self) -> list[IoCounter]:
        """Every container's counter."""
        return [container.counter for function in self.functions.values() for container in function.containers]

    # ---- clocks --------------------------------------------------------------------------------------------

    @property
    def clock(self) -> float:
        """The delivery clock: virtual seconds since the runtime started."""
        return self._clock.virtual

    def now(self) -> float:
        """The handlers' clock, in epoch seconds: the wall clock plus the virtual time the delivery clock ran
        ahead of real time (retry back-offs, delays). Monotonic and thread-safe."""
        return self._clock.now()

    @contextlib.contextmanager
    def waiting(self):
        """The span of one delivery's wait for its peers (`Ports.waiting`): its reads and its pauses (`wait`)."""
        thread = threading.get_ident()
        with self._lock:
            self._waiting.add(thread)
            self._lock.notify_all()  # the scheduler may start a later delivery once every one in flight waits
        try:
            yield
        finally:
            with self._lock:
                self._waiting.discard(thread)

    def wait(self, seconds: float) -> None:
        """A delivery's pause while it waits for its peers (`Ports.wait`): a real sleep while another delivery
        works (at least `LOCAL_POLL_SECONDS`, where Lambda's reads go back to back). When every delivery in flight
        waits, nothing changes but by time, so the clocks move on instead, by the pause and at least
        `IDLE_WAIT_STEP`, or to the next queued delivery that can start (a retry a minute later), which the
        scheduler then starts: a peer that never comes (a lost event) costs a wait's limit of virtual time, not of
        real."""
        with self._lock:
            idle = self.concurrency == 1 or len(self._waiting) >= self._in_flight
            if idle:  # a delivery that can start (a container of its function free) starts first, at its time
                startable = [delivery for delivery in self._queue.in_order() if delivery.function.free_container()]
                step = max(seconds, IDLE_WAIT_STEP)
                self._clock.advance_to(min(startable[0].due, self.clock + step) if startable else self.clock + step)
        time.sleep(IDLE_WAIT_SECONDS if idle else max(seconds, LOCAL_POLL_SECONDS))

    # ---- invocation ----------------------------------------------------------------------------------------

    def invoke_async(
        self, function: LocalFunction, payload: dict[str, Any], *, sender: Container | None = None
    ) -> None:
        """`Invoke` with `InvocationType=Event`: validate and queue (or, under faults, lose or copy) the event; one
        a container of the function sends is offered to that container first (`SENDER_OFFER_SECONDS`)."""
        body = encode_event(function.name, payload)
        request_id = str(uuid.uuid4())
        copies = self.faults.schedule(function, body) if self.faults is not None else [0.0]
        offered_until = time.monotonic() + SENDER_OFFER_SECONDS
        with self._lock:
            for copy in copies:
                delay, own_id = copy if isinstance(copy, tuple) else (copy, False)
                self._queue.push(
                    function,
                    body,
                    str(uuid.uuid4()) if own_id else request_id,
                    due=self.clock + delay,
                    enqueued_at=self.clock,
                    chain=self._queue.new_chain(),
                    sender=sender,
                    offered_until=offered_until,
                )
            self._lock.notify_all()

    def schedule(self, role: str, payload: dict[str, Any], *, after: float) -> None:
        """An EventBridge schedule's event for function `role`, due `after` virtual seconds from now (the handlers'
        clock moves on with it)."""
        function = self.functions[role]
        with self._lock:
            due = self.clock + after
            self._queue.push(
                function,
                encode_event(function.name, payload),
                str(uuid.uuid4()),
                due=due,
                enqueued_at=due,
                chain=self._queue.new_chain(),
            )
            self._lock.notify_all()

    def invoke(self, role: str, payload: dict[str, Any]) -> dict[str, Any]:
        """`Invoke` with `InvocationType=RequestResponse`: run now in a free warm container (else the first), return
        the result as the caller receives it (through JSON, at most 6 MB each way), raise the handler's error."""
        function = self.functions[role]
        body = encode_event(function.name, payload, synchronous=True)
        with self._lock:
            delivery = self._queue.direct(function, body, str(uuid.uuid4()), self.clock)
            container = function.free_container() or function.containers[0]
            container.busy = True
        try:
            with self._running():
                record, error = self._deliver(delivery, container, self.clock)
        finally:
            with self._lock:
                container.busy = False
                self._lock.notify_all()
        if error is not None:
            raise error
        return decode_response(function.name, record.result)

    def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Deliver queued events in delivery-clock order until the queue is empty and nothing runs (or `until()`)."""
        with self._running():
            if self.concurrency == 1:
                self._run_in_order(until)
            else:
                self._run_concurrently(until)

    @property
    def pending(self) -> int:
        return len(self._queue)

    # ---- scheduling ----------------------------------------------------------------------------------------

    def _run_in_order(self, until) -> None:
        """One delivery at a time, in the caller's thread: the deterministic order."""
        while self._queue and not (until and until()):
            delivery = self._queue.pop()
            self._clock.advance_to(delivery.due)
            self._dispatch(delivery, delivery.function.containers[0], self.clock)

    def _run_concurrently(self, until) -> None:
        """Ready deliveries (due now on the delivery clock) start as soon as a container of their function is free.
        A delivery due later waits until nothing runs (a running one may queue an earlier one), then the clock
        jumps to it. A delivery that starts at t ends at t + `STEP_SECONDS` on the delivery clock."""
        workers = self.concurrency * len(self.functions)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lnn-container") as pool:
            try:
                while not (until and until()):
                    with self._lock:
                        picked = self._pick()
                        while picked is None and self._in_flight and self._worker_error is None:
                            ends = self._offer_ends  # an offer it skipped: wake when it ends, or when a delivery does
                            self._lock.wait(None if ends is None else max(0.0, ends - time.monotonic()))
                            picked = self._pick()
                        if picked is None or self._worker_error is not None:
                            break
                        delivery, container = picked
                        container.busy = True
                        self._in_flight += 1
                        started = self.clock
                    pool.submit(self._work, delivery, container, started)
            finally:
                with self._lock:
                    while self._in_flight:
                        self._lock.wait()
        if self._worker_error is not None:
            error, self._worker_error = self._worker_error, None
            raise error

    def _pick(self) -> tuple[Delivery, Container] | None:
        """The first delivery in clock order that may start now, with a free container; the clock moves to it. A
        delivery offered to its sender's container waits for it while the offer lasts and the sender runs (the
        real time the first such offer ends is kept in `_offer_ends`, for the scheduler's wait); once a container
        takes a delivery, the other offers to it end. A delivery for any container takes one that no live offer
        waits for, if there is one."""
        now, self._offer_ends = time.monotonic(), None
        deliveries = self._queue.in_order()
        offered = frozenset(delivery.offered_to(now) for delivery in deliveries) - {None}
        for delivery in deliveries:
            if delivery.due > self.clock and self._in_flight > len(self._waiting):
                return None  # a later delivery starts when nothing works (those in flight all wait, or none is)
            sender = delivery.sender
            if delivery.offered_to(now) is not None and sender.busy and self._in_flight:
                self._offer_ends = min(self._offer_ends or delivery.offered_until, delivery.offered_until)
                continue
            container = sender if sender is not None and not sender.busy else delivery.function.free_container(offered)
            if container is not None:
                self._queue.remove(delivery)
                self._clock.advance_to(delivery.due)
                for other in deliveries:
                    if other.sender is container:
                        other.sender = None
                return delivery, container
        return None

    def _work(self, delivery: Delivery, container: Container, started: float) -> None:
        try:
            self._dispatch(delivery, container, started)
        except BaseException as error:  # a failure of the runtime itself (a destination's request): the caller's
            with self._lock:
                self._worker_error = self._worker_error or error
        finally:
            with self._lock:
                container.busy = False
                self._in_flight -= 1
                self._waiting.discard(threading.get_ident())
                self._lock.notify_all()

    def _dispatch(self, delivery: Delivery, container: Container, started: float) -> None:
        """Deliver (or expire) one event; queue its retry or give it up when it failed."""
        if self.clock - delivery.enqueued_at > delivery.function.event_age_seconds:
            self._give_up(delivery, "EventAgeExceeded", None)
            return
        _, error = self._deliver(delivery, container, started)
        if error is None:
            return
        if delivery.attempt < delivery.function.retry_attempts:
            with self._lock:
                self._queue.push(
                    delivery.function,
                    delivery.payload,
                    delivery.request_id,
                    due=max(self.clock, started + STEP_SECONDS) + retry_backoff(delivery.attempt),
                    chain=delivery.chain,
                    attempt=delivery.attempt + 1,
                    enqueued_at=delivery.enqueued_at,
                )
                self._lock.notify_all()
        else:
            self._give_up(delivery, "RetriesExhausted", error)


def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
