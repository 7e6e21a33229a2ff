"""A local Lambda runtime with the semantics of asynchronous invocation, for the deployed LNN functions.

Each function gets one warm container: its handler object, built by `lnn_core.handlers` with the function's
deployed environment (read from the emulator's `GetFunctionConfiguration`), the caller's boto3 session, a logger
writing to a file, and an invoker that enqueues here. Only the invoke transport differs from AWS:

- an event makes a JSON round trip, and one over 1 MB is refused, like `Invoke` with `InvocationType=Event`;
- the context carries the function's name and ARN, a request id (the same on every retry of one event), its
  memory and the remaining time from the configured timeout; a handler that overruns its timeout counts as failed;
- a failed delivery is retried up to the function's `MaximumRetryAttempts` (from its EventInvokeConfig; Lambda's
  default is 2), 1 and then 2 minutes later; then, or when an event is older than `MaximumEventAgeInSeconds`, a
  Lambda destination record goes to the on-failure destination (SNS topic, SQS queue or function);
- deliveries run one at a time, in order of a delivery clock (virtual seconds: a delivery takes `STEP_SECONDS`,
  a retry waits its back-off), so that delays reorder deliveries deterministically and no real time is waited.
"""

import contextlib
import heapq
import io
import itertools
import json
import os
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from lnn_core import handlers
from lnn_core.ports import ASYNC_PAYLOAD_LIMIT, IoCounter

STEP_SECONDS = 0.1  # delivery-clock time one delivery takes
RETRY_BACKOFF_SECONDS = (60.0, 120.0)  # Lambda waits 1 minute before the first retry, 2 before the second
DEFAULT_RETRY_ATTEMPTS = 2  # Lambda's default when a function has no EventInvokeConfig
DEFAULT_EVENT_AGE_SECONDS = 21_600
BUILDERS = {"trainer": handlers.build_trainer, "launcher": handlers.build_launcher, "watchdog": handlers.build_watchdog}


class PayloadTooLarge(ValueError):
    """What Lambda's `Invoke` answers (RequestEntityTooLargeException) to an async event over 1 MB."""


class SandboxKilled(BaseException):
    """The function's process died mid-invocation. A BaseException: no `except Exception` in a handler catches it."""


class Faults(Protocol):
    """Fault injection (the chaos harness); the runtime works without one."""

    def instrument(self, role: str, handler: Any) -> None: ...

    def schedule(self, function: "LocalFunction", payload: str) -> list[float]:
        """Delays (delivery-clock seconds) of the deliveries of one async invoke: [0.0] normally, [] when lost."""
        ...

    def begin(self, delivery: "Delivery", retries_left: int) -> None: ...


@dataclass
class LambdaContext:
    """The context object a Python Lambda handler receives."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    deadline: float  # time.monotonic() when the invocation times out
    function_version: str = "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    """A deployed function, as configured in the emulator, with its warm container."""

    role: str  # trainer | launcher | watchdog
    name: str
    arn: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str]
    retry_attempts: int
    event_age_seconds: int
    on_failure: str | None
    handler: Any = None
    counter: IoCounter | None = None  # the handler's ports' counter: the requests and bytes of its deliveries


@dataclass(order=True)
class Delivery:
    due: float
    sequence: int
    function: LocalFunction = field(compare=False)
    payload: str = field(compare=False)  # the event's JSON: every delivery decodes its own copy
    request_id: str = field(compare=False)
    enqueued_at: float = field(compare=False)
    attempt: int = field(default=0, compare=False)
    chain: int = field(default=0, compare=False)  # one per delivered copy; its retries share it

    @property
    def event(self) -> Any:
        return json.loads(self.payload)


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


class LocalInvoker:
    """The `Invoker` port for one target function: an async invoke enqueues a delivery. It counts the invoke in the
    caller's `IoCounter`, as `LambdaInvoker` does, so that a run's request counts are those it would make in AWS."""

    def __init__(self, runtime: "LocalLambdaRuntime", target: LocalFunction):
        self._runtime, self._target = runtime, target
        self.function_name = target.name
        self.counter: IoCounter | None = None  # the calling handler's, set once its ports exist

    def invoke_async(self, payload: dict[str, Any]) -> None:
        self._runtime.invoke_async(self._target, payload)
        if self.counter is not None:
            self.counter.requests["lambda"] += 1


class LocalLambdaRuntime:
    """Runs the stack's three functions from one queue; see the module's docstring for the semantics."""

    def __init__(
        self,
        session: boto3.Session,
        functions: dict[str, str],
        *,
        log_stream=None,
        faults: Faults | None = None,
        on_delivery: Callable[[DeliveryRecord], None] | None = None,
    ):
        """`functions` maps a role (trainer, launcher, watchdog) to the deployed function's name; the handlers' logs
        go to `log_stream` (by default, kept in memory with the runtime)."""
        self.session, self.faults, self.on_delivery = session, faults, on_delivery
        self._log_stream = log_stream or io.StringIO()
        self._queue: list[Delivery] = []
        self._sequence = itertools.count()
        self._chains = itertools.count()
        self.clock = 0.0
        self.deliveries: list[DeliveryRecord] = []
        self.failed_events: list[dict[str, Any]] = []  # destination records of events that were given up
        self.functions = {role: self._describe(role, name) for role, name in functions.items()}
        self._by_name = {function.name: function for function in self.functions.values()}
        for function in self.functions.values():
            self._build(function)

    # ---- set-up --------------------------------------------------------------------------------------------

    def _describe(self, role: str, name: str) -> LocalFunction:
        client = self.session.client("lambda")
        configuration = client.get_function_configuration(FunctionName=name)
        try:
            invoke_config = client.get_function_event_invoke_config(FunctionName=name)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            invoke_config = {}
        return LocalFunction(
            role=role,
            name=name,
            arn=configuration["FunctionArn"],
            timeout_seconds=configuration.get("Timeout", 3),
            memory_mb=configuration.get("MemorySize", 128),
            environment={
                **configuration.get("Environment", {}).get("Variables", {}),
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(configuration.get("MemorySize", 128)),
                "AWS_REGION": self.session.region_name,
            },
            retry_attempts=invoke_config.get("MaximumRetryAttempts", DEFAULT_RETRY_ATTEMPTS),
            event_age_seconds=invoke_config.get("MaximumEventAgeInSeconds", DEFAULT_EVENT_AGE_SECONDS),
            on_failure=invoke_config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"),
        )

    def _build(self, function: LocalFunction) -> None:
        """The warm container: the handler object, built while the function's environment is in force."""
        # The trainer invokes itself; the launcher and the watchdog invoke the function their environment names.
        target = self._by_name[function.environment.get("LNN_TRAINER_FUNCTION", function.name)]
        invoker = LocalInvoker(self, target)
        with self._in_container(function):
            logger = Logger(service="lnn", stream=LOG_SINK)
            function.handler = BUILDERS[function.role](session=self.session, invoker=invoker, logger=logger)
        function.counter = invoker.counter = function.handler.ports.counter
        if self.faults is not None:
            self.faults.instrument(function.role, function.handler)

    def handler(self, role: str) -> Any:
        return self.functions[role].handler

    # ---- invocation ----------------------------------------------------------------------------------------

    def invoke_async(self, function: LocalFunction, payload: dict[str, Any]) -> None:
        """`Invoke` with `InvocationType=Event`: validate and queue (or, under faults, lose or copy) the event."""
        body = json.dumps(payload)
        size = len(body.encode())
        if size > ASYNC_PAYLOAD_LIMIT:
            raise PayloadTooLarge(
                f"RequestEntityTooLargeException: the event for {function.name} is {size} bytes; "
                f"Lambda's asynchronous invoke accepts at most {ASYNC_PAYLOAD_LIMIT}"
            )
        request_id = str(uuid.uuid4())
        delays = self.faults.schedule(function, body) if self.faults is not None else [0.0]
        for delay in delays:
            self._enqueue(function, body, request_id, due=self.clock + delay, chain=next(self._chains))

    def invoke(self, role: str, payload: dict[str, Any]) -> dict[str, Any]:
        """`Invoke` with `InvocationType=RequestResponse`: run now, return the result, raise the handler's error."""
        function = self.functions[role]
        body = json.dumps(payload)
        delivery = Delivery(self.clock, next(self._sequence), function, body, str(uuid.uuid4()), self.clock)
        record, error = self._deliver(delivery)
        if error is not None:
            raise error
        return record.result

    def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Deliver queued events in delivery-clock order until the queue is empty (or `until()` is true)."""
        while self._queue and not (until and until()):
            delivery = heapq.heappop(self._queue)
            self.clock = max(self.clock, delivery.due)
            if self.clock - delivery.enqueued_at > delivery.function.event_age_seconds:
                self._give_up(delivery, "EventAgeExceeded", None)
                continue
            _, error = self._deliver(delivery)
            if error is None:
                continue
            if delivery.attempt < delivery.function.retry_attempts:
                backoff = RETRY_BACKOFF_SECONDS[min(delivery.attempt, len(RETRY_BACKOFF_SECONDS) - 1)]
                self._enqueue(delivery.function, delivery.payload, delivery.request_id, due=self.clock + backoff,
                              chain=delivery.chain, attempt=delivery.attempt + 1, enqueued_at=delivery.enqueued_at)
            else:
                self._give_up(delivery, "RetriesExhausted", error)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _enqueue(self, function, payload, request_id, *, due, chain, attempt=0, enqueued_at=None) -> None:
        heapq.heappush(
            self._queue,
            Delivery(due, next(self._sequence), function, payload, request_id,
                     self.clock if enqueued_at is None else enqueued_at, attempt, chain),
        )

    def _deliver(self, delivery: Delivery) -> tuple[DeliveryRecord, BaseException | None]:
        function = delivery.function
        if self.faults is not None:
            self.faults.begin(delivery, function.retry_attempts - delivery.attempt)
        started, io_before = time.monotonic(), function.counter.snapshot()
        context = LambdaContext(function.name, function.arn, function.memory_mb, delivery.request_id,
                                started + function.timeout_seconds)
        result, error = None, None
        try:
            with self._in_container(function):
                result = function.handler.handle(delivery.event, context)
        except (Exception, SandboxKilled) as raised:
            error = raised
        seconds = time.monotonic() - started
        if error is None and seconds > function.timeout_seconds:
            error = TimeoutError(f"Task timed out after {function.timeout_seconds:.2f} seconds")
        self.clock += STEP_SECONDS
        record = DeliveryRecord(function.role, delivery.request_id, delivery.attempt, result,
                                None if error is None else f"{type(error).__name__}: {error}", seconds,
                                function.counter.since(io_before))
        if error is not None and not isinstance(error, SandboxKilled):
            self._log_stream.write(f"{function.name} {delivery.request_id} failed:\n{traceback.format_exc()}\n")
        self.deliveries.append(record)
        if self.on_delivery is not None:
            self.on_delivery(record)
        return record, error

    @contextlib.contextmanager
    def _in_container(self, function: LocalFunction):
        """The function's environment, with its log lines and printed metrics going to the runtime's log."""
        with environment(function.environment), LOG_SINK.writing_to(self._log_stream), contextlib.redirect_stdout(self._log_stream):
            yield

    def _give_up(self, delivery: Delivery, condition: str, error: BaseException | None) -> None:
        """Send a Lambda destination record for an event that will not be retried again."""
        function = delivery.function
        record = {
            "version": "1.0",
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": delivery.request_id,
                "functionArn": f"{function.arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": delivery.attempt + (1 if error is not None else 0),
            },
            "requestPayload": delivery.event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {
                "errorMessage": str(error) if error is not None else "event expired before delivery",
                "errorType": type(error).__name__ if error is not None else condition,
            },
        }
        self.failed_events.append(record)
        destination = function.on_failure
        if destination is None:
            return
        body = json.dumps(record)
        service = destination.split(":")[2]
        if service == "sns":
            self.session.client("sns").publish(TopicArn=destination, Message=body)
        elif service == "sqs":
            queue_url = self.session.client("sqs").get_queue_url(QueueName=destination.rsplit(":", 1)[1])["QueueUrl"]
            self.session.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)
        elif service == "lambda" and destination.rsplit(":", 1)[-1] in self._by_name:
            self.invoke_async(self._by_name[destination.rsplit(":", 1)[-1]], record)
        else:
            self._log_stream.write(f"on-failure destination {destination} is not supported locally; record: {body}\n")


class _LogSink:
    """The stream of every Powertools `Logger` built here. Powertools configures a logger once per service name and
    keeps its first stream, so the stream is this stable object, which writes to the current runtime's log."""

    def __init__(self):
        self._target = None

    @contextlib.contextmanager
    def writing_to(self, stream):
        previous, self._target = self._target, stream
        try:
            yield
        finally:
            self._target = previous

    def write(self, text: str) -> int:
        return (self._target or sys.stderr).write(text)

    def flush(self) -> None:
        (self._target or sys.stderr).flush()


LOG_SINK = _LogSink()


@contextlib.contextmanager
def environment(variables: dict[str, str]):
    """Set environment variables for the duration of the block, then restore the previous values."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
