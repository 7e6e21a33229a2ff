"""One delivery in a warm container (`DeliveryExecution`, a part of `LocalLambdaRuntime`): its Lambda context, its
time limit, its log lines and printed metrics, what it did (`DeliveryRecord`), and the destination record of an
event given up.
"""

import contextlib
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from lnn_cli.cloud.runtime.atomic import atomic_requests
from lnn_cli.cloud.runtime.containers import LOG_SINK, Container, LocalFunction, ThreadRouter, environment
from lnn_cli.cloud.runtime.queue import Delivery
from lnn_cli.cloud.runtime.semantics import (
    STEP_SECONDS,
    LambdaContext,
    SandboxKilled,
    destination_record,
    send_to_destination,
    timed_out,
)


@dataclass
class DeliveryRecord:
    """What one delivery did: the handler's result, or its error."""

    role: str
    request_id: str
    attempt: int
    result: dict[str, Any] | None
    error: str | None
    seconds: float
    io: dict[str, Any]  # the requests and S3 bytes of this delivery (`IoCounter.since`)
    run_id: str | None = None  # the run the event (or the result) names, when it names one
    container: int = 0
    # each request's (service, start, end, wave), its times in seconds from the delivery's start (`IoCounter.trace`)
    spans: list[tuple] = field(default_factory=list, repr=False)


class DeliveryExecution:
    """How the runtime runs one delivery. It uses the state `LocalLambdaRuntime.__init__` sets: the fault harness,
    the clocks, the lock, the log stream, the records, the BLAS controller and the functions by name."""

    # ---- one delivery --------------------------------------------------------------------------------------

    def _deliver(self, delivery: Delivery, container: Container, started_clock: float):
        function = delivery.function
        if self.faults is not None:
            self.faults.begin(delivery, function.retry_attempts - delivery.attempt)
        started, io_before, begun = time.monotonic(), container.counter.snapshot(), self.now()
        context = LambdaContext(
            function.name,
            function.arn,
            function.memory_mb,
            delivery.request_id,
            begun + function.timeout_seconds,
            clock=self.now,
        )
        result, error, failure = None, None, ""
        event = delivery.event
        try:
            with self._in_container(function):
                result = container.handler.handle(event, context)
        except (Exception, SandboxKilled) as raised:
            error = raised
            failure = traceback.format_exc()
        seconds = time.monotonic() - started
        if error is None:  # on the handlers' clock: a delivery's virtual waits count (`LocalLambdaRuntime.wait`)
            error = timed_out(function, max(seconds, self.now() - begun))
        self._clock.advance_to(started_clock + STEP_SECONDS)
        record = DeliveryRecord(
            function.role,
            delivery.request_id,
            delivery.attempt,
            result,
            None if error is None else f"{type(error).__name__}: {error}",
            seconds,
            container.counter.since(io_before),
            _run_id(event, result),
            container.index,
            [
                (service, begun - started, ended - started, wave)
                for service, begun, ended, wave in container.counter.spans_since(io_before)
            ],
        )
        if error is not None and not isinstance(error, SandboxKilled):
            self._log_stream.write(f"{function.name} {delivery.request_id} failed:\n{failure}\n")
        with self._lock:
            self.deliveries.append(record)
        if self.on_delivery is not None:
            with self._callback_lock:
                self.on_delivery(record)
        return record, error

    @contextlib.contextmanager
    def _running(self):
        """While deliveries run: stdout per thread, the BLAS cap, and (with threads) atomic AWS requests."""
        with contextlib.ExitStack() as stack:
            if not isinstance(sys.stdout, ThreadRouter):
                stack.enter_context(contextlib.redirect_stdout(ThreadRouter(_stdout_of(sys.stdout))))
            if self._blas is not None:
                stack.enter_context(self._blas.limit(limits=self.container_cpus, user_api="blas"))
            if self.concurrency > 1:
                stack.enter_context(atomic_requests())
            yield

    @contextlib.contextmanager
    def _in_container(self, function: LocalFunction):
        """The thread's log lines and printed metrics go to the runtime's log. At concurrency 1, the function's
        environment is also in force (os.environ is process-wide: with threads, the handlers rely on the
        environment they were built with, which is all they read)."""
        with contextlib.ExitStack() as stack:
            if self.concurrency == 1:
                stack.enter_context(environment(function.environment))
            stack.enter_context(LOG_SINK.writing_to(self._log_stream))
            if isinstance(sys.stdout, ThreadRouter):
                stack.enter_context(sys.stdout.writing_to(self._log_stream))
            yield

    def _give_up(self, delivery: Delivery, condition: str, error: BaseException | None) -> None:
        """Send a Lambda destination record for an event that will not be retried again."""
        record = destination_record(delivery.function, delivery, condition, error)
        with self._lock:
            self.failed_events.append(record)
        send_to_destination(
            self._client,
            delivery.function.on_failure,
            record,
            functions=self._by_name,
            invoke_async=self.invoke_async,
            log=self._log_stream,
        )

    def _client(self, service: str):
        with self._lock:  # boto3 sessions are not thread-safe; clients are
            if service not in self._clients:
                self._clients[service] = self.session.client(service)
            return self._clients[service]


def _run_id(event: Any, result: Any) -> str | None:
    for source in (event, result):
        if isinstance(source, dict) and isinstance(source.get("run_id"), str):
            return source["run_id"]
    return None


def _stdout_of(stream):
    return lambda: stream
