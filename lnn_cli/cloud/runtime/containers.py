"""A function's warm containers, and what makes them safe to run side by side in threads.

Each container has its own handler object, built by `lnn_core.handlers` while the function's environment is in
force (the handlers read their environment when they are built, not per event), so its own ports, `IoCounter`
and warm cache, as a Lambda execution environment has. Containers are built one at a time, up front.

What is process-wide and shared between containers is made per thread or serialized here: the log stream and
stdout go to the thread's current target (`ThreadRouter`); Powertools' `Metrics` keeps its metric set at class
level, so each container's metrics calls are serialized (`SerializedMetrics`).
"""

import contextlib
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from lnn_cli.cloud.runtime.semantics import DEFAULT_EVENT_AGE_SECONDS, DEFAULT_RETRY_ATTEMPTS
from lnn_core import handlers
from lnn_core.aws.sdk import IoCounter

BUILDERS = {
    "trainer": handlers.build_trainer,
    "launcher": handlers.build_launcher,
    "watchdog": handlers.build_watchdog,
    "predictor": handlers.build_predictor,
}


@dataclass(eq=False)  # one environment is equal to itself only (and can be a set's member)
class Container:
    """One execution environment: it runs one delivery at a time."""

    index: int
    handler: Any
    counter: IoCounter  # the handler's ports' counter: the requests and bytes of its deliveries
    busy: bool = False


@dataclass
class LocalFunction:
    """A deployed function, as configured in the emulator, with its warm containers."""

    role: str  # trainer | launcher | watchdog | predictor
    name: str
    arn: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str]
    retry_attempts: int
    event_age_seconds: int
    on_failure: str | None
    containers: list[Container] = field(default_factory=list)

    @property
    def handler(self) -> Any:
        """The first container's handler; setting it replaces every container's (a stand-in for tests)."""
        return self.containers[0].handler

    @handler.setter
    def handler(self, handler: Any) -> None:
        for container in self.containers:
            container.handler = handler

    @property
    def counter(self) -> IoCounter:
        """The requests and bytes of all this function's containers."""
        total = IoCounter()
        for container in self.containers:
            total.requests.update(container.counter.requests)
            total.s3_bytes_in += container.counter.s3_bytes_in
            total.s3_bytes_out += container.counter.s3_bytes_out
        return total

    def free_container(self, avoiding: frozenset[Container] = frozenset()) -> Container | None:
        """The first free container, one not in `avoiding` if there is one."""
        free = [container for container in self.containers if not container.busy]
        return next((container for container in free if container not in avoiding), free[0] if free else None)


def describe(client, role: str, name: str, region: str) -> LocalFunction:
    """The function as deployed: `GetFunctionConfiguration` and its `EventInvokeConfig` (Lambda's defaults without)."""
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
            "AWS_REGION": region,
        },
        retry_attempts=invoke_config.get("MaximumRetryAttempts", DEFAULT_RETRY_ATTEMPTS),
        event_age_seconds=invoke_config.get("MaximumEventAgeInSeconds", DEFAULT_EVENT_AGE_SECONDS),
        on_failure=invoke_config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"),
    )


_BUILD_LOCK = threading.Lock()  # os.environ is process-wide: one container is built at a time
_METRICS_LOCK = threading.RLock()  # Powertools' metric set is shared by every Metrics object


def build_handler(function: LocalFunction, *, session, invoker, clock, log_stream, functions=None) -> Any:
    """A handler object for a new container of `function`, built while the function's environment is in force;
    `functions`: its invokers of the other functions it invokes, by role (for the trainer and the watchdog)."""
    extra = {"functions": functions} if functions else {}
    with _BUILD_LOCK, environment(function.environment), LOG_SINK.writing_to(log_stream):
        handler = BUILDERS[function.role](session=session, invoker=invoker, logger=_logger(), clock=clock, **extra)
    if getattr(handler, "metrics", None) is not None:
        handler.metrics = SerializedMetrics(handler.metrics)
    return handler


def _logger():
    from aws_lambda_powertools import Logger

    logger = Logger(service="lnn", stream=LOG_SINK)
    # Powertools configures the "lnn" logger once per process and keeps the first stream it was given (a test may
    # have built a handler first), so point its one handler at the sink, which writes to sys.stdout outside a runtime.
    logger.registered_handler.setStream(LOG_SINK)
    return logger


class SerializedMetrics:
    """A Powertools `Metrics` whose calls hold one process-wide lock (its metric set is a class attribute)."""

    def __init__(self, metrics):
        self._metrics = metrics

    def __getattr__(self, name):
        value = getattr(self._metrics, name)
        if not callable(value):
            return value

        def serialized(*args, **kwargs):
            with _METRICS_LOCK:
                return value(*args, **kwargs)

        return serialized


class ThreadRouter:
    """A text stream that writes to the current thread's target (set with `writing_to`), else to `fallback()`."""

    def __init__(self, fallback):
        self._fallback = fallback
        self._local = threading.local()

    @contextlib.contextmanager
    def writing_to(self, stream):
        previous = getattr(self._local, "target", None)
        self._local.target = stream
        try:
            yield
        finally:
            self._local.target = previous

    def _target(self):
        return getattr(self._local, "target", None) or self._fallback()

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()


class LockedStream:
    """A text stream shared by threads: one write at a time, so lines do not interleave."""

    def __init__(self, stream):
        self._stream, self._lock = stream, threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            return self._stream.write(text)

    def flush(self) -> None:
        with self._lock:
            self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


# The stream of every Powertools `Logger` built here: a stable object that writes to the current thread's runtime
# log, and elsewhere to the current sys.stdout (Powertools' own default).
LOG_SINK = ThreadRouter(lambda: sys.stdout)


@contextlib.contextmanager
def environment(variables: dict[str, str]):
    """Set environment variables for the duration of the block, then restore the previous values. Process-wide:
    only for one thread at a time (building containers; deliveries at concurrency 1)."""
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
