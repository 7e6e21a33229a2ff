"""Lambda's semantics of an asynchronous invoke: the event's JSON and size limit, the context, retries, and the
destination record of an event given up; and of a synchronous one: 6 MB each way, the answer's JSON round trip."""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lnn_core.aws.ports import ASYNC_PAYLOAD_LIMIT

STEP_SECONDS = 0.1  # delivery-clock time one delivery takes
# How long (real seconds) an event a trainer delivery invokes waits for that delivery's container to be free, at
# concurrency above 1. In Lambda the async hop outlasts the sender's last request, so its idle environment, with
# the step's data and state cached, can take the event; here a queued event would otherwise go at once to another
# container while its sender finishes.
SENDER_OFFER_SECONDS = 0.05
RETRY_BACKOFF_SECONDS = (60.0, 120.0)  # Lambda waits 1 minute before the first retry, 2 before the second
DEFAULT_RETRY_ATTEMPTS = 2  # Lambda's default when a function has no EventInvokeConfig
DEFAULT_EVENT_AGE_SECONDS = 21_600
SYNC_PAYLOAD_LIMIT = 6_291_456  # bytes, Lambda's limit for a synchronous invoke's request, and for its response


class PayloadTooLarge(ValueError):
    """What Lambda's `Invoke` answers (RequestEntityTooLargeException) to an async event over 1 MB, or a
    synchronous request over 6 MB; for a response over 6 MB, its function error."""


class SandboxKilled(BaseException):
    """The function's process died mid-invocation. A BaseException: no `except Exception` in a handler catches it."""


@dataclass
class LambdaContext:
    """The context object a Python Lambda handler receives."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    deadline: float  # when the invocation times out, on `clock`
    function_version: str = "$LATEST"
    # the runtime's handlers' clock: a delivery waiting for its peers while every other waits too spends virtual time
    clock: Callable[[], float] = time.monotonic

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.clock()) * 1000))


def encode_event(function_name: str, payload: Any, *, synchronous: bool = False) -> str:
    """The event's JSON, as `Invoke` accepts it: at most 1 MB with `InvocationType=Event`, 6 MB with RequestResponse."""
    body = json.dumps(payload)
    size = len(body.encode())
    limit = SYNC_PAYLOAD_LIMIT if synchronous else ASYNC_PAYLOAD_LIMIT
    if size > limit:
        kind = "synchronous" if synchronous else "asynchronous"
        raise PayloadTooLarge(
            f"RequestEntityTooLargeException: the event for {function_name} is {size} bytes; "
            f"Lambda's {kind} invoke accepts at most {limit}"
        )
    return body


def decode_response(function_name: str, result: Any) -> Any:
    """The handler's return value as the caller of a synchronous invoke receives it: through JSON, at most 6 MB."""
    body = json.dumps(result)
    size = len(body.encode())
    if size > SYNC_PAYLOAD_LIMIT:
        raise PayloadTooLarge(
            f"Function.ResponseSizeTooLarge: the response of {function_name} is {size} bytes; "
            f"Lambda's synchronous invoke returns at most {SYNC_PAYLOAD_LIMIT}"
        )
    return json.loads(body)


def retry_backoff(attempt: int) -> float:
    """Delivery-clock seconds before the retry of a failed `attempt` (0 for the first delivery)."""
    return RETRY_BACKOFF_SECONDS[min(attempt, len(RETRY_BACKOFF_SECONDS) - 1)]


def timed_out(function, seconds: float) -> TimeoutError | None:
    if seconds > function.timeout_seconds:
        return TimeoutError(f"Task timed out after {function.timeout_seconds:.2f} seconds")
    return None


def destination_record(function, delivery, condition: str, error: BaseException | None) -> dict[str, Any]:
    """The Lambda destination record of an event that will not be retried again."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
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


def send_to_destination(
    clients, destination: str | None, record: dict[str, Any], *, functions: dict, invoke_async, log
) -> None:
    """Send `record` to the on-failure destination: an SNS topic, an SQS queue or a function of this runtime.
    `clients(service)` gives a boto3 client."""
    if destination is None:
        return
    body = json.dumps(record)
    service = destination.split(":")[2]
    if service == "sns":
        clients("sns").publish(TopicArn=destination, Message=body)
    elif service == "sqs":
        sqs = clients("sqs")
        sqs.send_message(
            QueueUrl=sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[1])["QueueUrl"], MessageBody=body
        )
    elif service == "lambda" and destination.rsplit(":", 1)[-1] in functions:
        invoke_async(functions[destination.rsplit(":", 1)[-1]], record)
    else:
        log.write(f"on-failure destination {destination} is not supported locally; record: {body}\n")
