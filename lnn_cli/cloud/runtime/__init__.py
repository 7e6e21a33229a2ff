"""A local Lambda runtime with the semantics of asynchronous invocation, for the deployed LNN functions.

- `core`: `LocalLambdaRuntime`, the scheduler (in order at concurrency 1, threads beyond);
- `execution`: one delivery in a container: its context, time limit, logs, record and destination record;
- `containers`: the functions' warm containers and what makes them safe side by side;
- `queue`: the delivery queue, the delivery clock and the handlers' clock;
- `semantics`: Lambda's async invoke: payload limit, context, retries, destination records;
- `atomic`: one AWS request at a time for in-process moto while threads run.
"""

from lnn_cli.cloud.runtime.atomic import atomic_requests
from lnn_cli.cloud.runtime.containers import (
    BUILDERS,
    LOG_SINK,
    Container,
    LocalFunction,
    environment,
)
from lnn_cli.cloud.runtime.core import Faults, LocalInvoker, LocalLambdaRuntime
from lnn_cli.cloud.runtime.execution import DeliveryRecord
from lnn_cli.cloud.runtime.queue import Delivery, DeliveryClock, DeliveryQueue
from lnn_cli.cloud.runtime.semantics import (
    ASYNC_PAYLOAD_LIMIT,
    DEFAULT_EVENT_AGE_SECONDS,
    DEFAULT_RETRY_ATTEMPTS,
    RETRY_BACKOFF_SECONDS,
    STEP_SECONDS,
    SYNC_PAYLOAD_LIMIT,
    LambdaContext,
    PayloadTooLarge,
    SandboxKilled,
)

__all__ = [
    "ASYNC_PAYLOAD_LIMIT",
    "BUILDERS",
    "DEFAULT_EVENT_AGE_SECONDS",
    "DEFAULT_RETRY_ATTEMPTS",
    "LOG_SINK",
    "RETRY_BACKOFF_SECONDS",
    "STEP_SECONDS",
    "SYNC_PAYLOAD_LIMIT",
    "Container",
    "Delivery",
    "DeliveryClock",
    "DeliveryQueue",
    "DeliveryRecord",
    "Faults",
    "LambdaContext",
    "LocalFunction",
    "LocalInvoker",
    "LocalLambdaRuntime",
    "PayloadTooLarge",
    "SandboxKilled",
    "atomic_requests",
    "environment",
]
