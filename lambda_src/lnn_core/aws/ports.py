"""The AWS adapters LNN's logic talks to: object store (S3), notifier (SNS), invoker (Lambda),
and `Ports`, which bundles them with the run table (DynamoDB, run_table.py).

They are passed in, so the same handler runs in Lambda, in tests (moto) and in the local runtime (which swaps
only the invoker). Every adapter counts its requests and bytes in a shared `IoCounter`. Independent requests of one
delivery (a reduce's K GETs, a round's K invokes) go out together through `Ports.fan_out`.
"""

import contextlib
import contextvars
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import BOTO_CONFIG, CLAIM_BOTO_CONFIG, WAVE, IoCounter, trace_requests
from lnn_core.aws.usage import MIB
from lnn_core.errors import RunFailure

SCRATCH_TAG = "lnn-scratch=true"  # the bucket's lifecycle rule expires objects with this tag
ASYNC_PAYLOAD_LIMIT = 1_048_576  # bytes, Lambda's limit for an asynchronous invoke
# Requests one delivery has in flight at once (`RequestFanOut`): a round of up to 64 workers in one wave. boto3's
# connection pool (max_pool_connections) is sized to match, so that no request waits for a connection.
CONCURRENT_REQUESTS = 64
REQUEST_THREADS = "lnn-request"  # the name of those threads
# The environment variables naming the other functions a function may invoke, by the role of the function named
FUNCTION_ENVIRONMENT = {"launcher": "LNN_LAUNCH_FUNCTION", "watchdog": "LNN_WATCHDOG_FUNCTION"}

# The methods whose calls change the world: the chaos harness injects crashes around exactly these.
EFFECTS = {
    "store": ("put_bytes", "copy", "delete_keys"),
    "table": (
        "create_run",
        "mark_started",
        "transition",
        "claim_send",
        "mark_invoked",
        "claim_notification",
        "mark_notified",
        "put_epoch_items",
        "request_stop",
        "record_resume",
        "continue_stopped",
        "refresh_heartbeat",
        "join_barrier",
        "claim_slices",
        "join_slices",
        "join_fit",
        "claim_commit",
        "release_commit",
    ),
    "notifier": ("publish",),
    "invoker": ("invoke_async",),
}


# What S3 answers a conditional write whose condition failed (409: a concurrent conditional write to the same key)
CONDITION_FAILED = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    etag: str
    modified: float  # epoch seconds of its last write (S3's LastModified)


STORE_CACHE_BYTES = 256 * MIB  # a warm container's cache of immutable objects read or written


class S3ObjectStore:
    """Objects under one bucket. Reads of immutable keys (training state) are cached in memory, least recently
    used first out."""

    def __init__(self, client, bucket: str, counter: IoCounter, *, cache_bytes: int = STORE_CACHE_BYTES):
        self._client, self.bucket, self._counter = client, bucket, counter
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self.cache_limit, self._cached = cache_bytes, 0  # bytes of objects it may hold in memory
        self._cache_lock = threading.Lock()  # a delivery's requests may run in threads (`RequestFanOut`)

    def get_bytes(self, key: str, *, etag: str | None = None, cache: bool = True) -> bytes:
        """The object's bytes. With `etag`, only that version: a changed object is a `RunFailure`."""
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        request = {"Bucket": self.bucket, "Key": key} | ({"IfMatch": etag} if etag else {})
        self._counter.count("s3", s3_reads=1)
        try:
            data = self._client.get_object(**request)["Body"].read()
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in ("NoSuchKey", "404"):
                raise RunFailure(f"s3 object {key} is missing") from error
            if code in ("PreconditionFailed", "412"):
                raise RunFailure(f"s3 object {key} changed during the run (ETag is no longer {etag})") from error
            raise
        self._counter.add_bytes(s3_in=len(data))
        if cache:
            self._remember(key, data)
        return data

    def head(self, key: str) -> tuple[str, int] | None:
        """The object's (ETag, size in bytes), or None when it does not exist."""
        self._counter.count("s3", s3_reads=1)
        try:
            answer = self._client.head_object(Bucket=self.bucket, Key=key)
            return answer["ETag"], int(answer["ContentLength"])
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def put_bytes(self, key: str, data: bytes, *, scratch: bool = False) -> None:
        """Write an object; `scratch` objects are tagged for the lifecycle rule that expires them."""
        self._counter.count("s3")
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data, **({"Tagging": SCRATCH_TAG} if scratch else {}))
        self._counter.add_bytes(s3_out=len(data))
        self._remember(key, data)

    def read_current(self, key: str) -> "StoredObject | None":
        """A mutable object as it is now (never cached): its bytes, ETag and when it was last written; None when it
        does not exist."""
        self._counter.count("s3", s3_reads=1)
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        data = answer["Body"].read()
        self._counter.add_bytes(s3_in=len(data))
        return StoredObject(data, answer["ETag"], answer["LastModified"].timestamp())

    def put_if(self, key: str, data: bytes, *, etag: str | None) -> str | None:
        """Write an object only if it does not exist (`etag` None: If-None-Match) or is still the version of `etag`
        (If-Match): the new ETag, or None when the condition failed (another writer came first). Never cached."""
        self._counter.count("s3")
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            answer = self._client.put_object(Bucket=self.bucket, Key=key, Body=data, **condition)
        except ClientError as error:
            if error.response["Error"]["Code"] in CONDITION_FAILED:
                return None
            raise
        self._counter.add_bytes(s3_out=len(data))
        return answer["ETag"]

    def copy(self, source: str, destination: str) -> bool:
        """Copy an object within the bucket (server side: its bytes do not pass through this function). False when
        the source does not exist."""
        self._counter.count("s3")
        try:
            self._client.copy_object(
                Bucket=self.bucket, Key=destination, CopySource={"Bucket": self.bucket, "Key": source}
            )
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return False
            raise
        return True

    def delete_keys(self, keys: list[str]) -> None:
        """Delete objects (missing ones are fine), up to 1000 a request."""
        with self._cache_lock:
            for key in keys:
                if key in self._cache:
                    self._cached -= len(self._cache.pop(key))
        for start in range(0, len(keys), 1000):
            self._counter.count("s3", s3_deletes=1)
            chunk = keys[start : start + 1000]
            self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
            )

    def list_objects(self, prefix: str) -> dict[str, tuple[str, int]]:
        """Every object under `prefix`: key -> (ETag, size in bytes)."""
        listed: dict[str, tuple[str, int]] = {}
        request = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            self._counter.count("s3")
            answer = self._client.list_objects_v2(**request)
            listed |= {item["Key"]: (item["ETag"], int(item["Size"])) for item in answer.get("Contents", [])}
            if not answer.get("IsTruncated"):
                return listed
            request["ContinuationToken"] = answer["NextContinuationToken"]

    def get_range(self, key: str, start: int, stop: int, *, etag: str | None = None) -> bytes:
        """Bytes start .. stop - 1 of the object, with `etag` only of that version (a missing or changed object is a
        `RunFailure`). An empty range is b"" without a request: S3 has no form for it (`bytes=A-B` reads at least
        one byte), and one it cannot parse it answers with the whole object."""
        if stop < start:
            raise ValueError(f"the byte range {start}..{stop} of {key} ends before it starts")
        if stop == start:
            return b""
        request = {"Bucket": self.bucket, "Key": key, "Range": f"bytes={start}-{stop - 1}"}
        request |= {"IfMatch": etag} if etag else {}
        self._counter.count("s3", s3_reads=1)
        try:
            data = self._client.get_object(**request)["Body"].read()
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in ("NoSuchKey", "404"):
                raise RunFailure(f"s3 object {key} is missing") from error
            if code in ("PreconditionFailed", "412"):
                raise RunFailure(f"s3 object {key} changed during the run (ETag is no longer {etag})") from error
            raise
        self._counter.add_bytes(s3_in=len(data))
        return data

    def _remember(self, key: str, data: bytes) -> None:
        if len(data) > self.cache_limit:
            return
        with self._cache_lock:
            if key in self._cache:
                self._cached -= len(self._cache.pop(key))
            self._cache[key] = data
            self._cached += len(data)
            while self._cached > self.cache_limit:
                self._cached -= len(self._cache.popitem(last=False)[1])


class SnsNotifier:
    def __init__(self, client, topic_arn: str, counter: IoCounter):
        self._client, self.topic_arn, self._counter = client, topic_arn, counter

    def publish(self, *, subject: str, body: dict[str, Any], status: str, message_id: str | None = None) -> None:
        """One message: a readable subject, a JSON body, and a `status` attribute for subscription filters. With
        `message_id`, the same in the body and as an attribute: a standard topic delivers a retried Publish twice,
        and a subscriber drops the second by this key."""
        self._counter.count("sns")
        attributes = {"status": {"DataType": "String", "StringValue": status}}
        if message_id is not None:
            body = {**body, "message_id": message_id}
            attributes["message_id"] = {"DataType": "String", "StringValue": message_id}
        self._client.publish(
            TopicArn=self.topic_arn,
            Subject=subject[:100],
            Message=json.dumps(body, indent=2, sort_keys=True),
            MessageAttributes=attributes,
        )


class Invoker(Protocol):
    def invoke_async(self, payload: dict[str, Any]) -> None: ...


class LambdaInvoker:
    """Asynchronous (InvocationType=Event) invokes of one function."""

    def __init__(self, client, function_name: str, counter: IoCounter):
        self._client, self.function_name, self._counter = client, function_name, counter

    def invoke_async(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        if len(body) > ASYNC_PAYLOAD_LIMIT:
            raise ValueError(f"event of {len(body)} bytes exceeds Lambda's {ASYNC_PAYLOAD_LIMIT}-byte async limit")
        self._counter.count("lambda")
        self._client.invoke(FunctionName=self.function_name, InvocationType="Event", Payload=body)


Item, Answer = TypeVar("Item"), TypeVar("Answer")


class RequestFanOut:
    """Independent requests of one delivery sent together: `map(call, items)` answers `call(item)` for every item,
    in the items' order whatever order they complete in, in waves of up to `width` at once, each wave a thread per
    item (width 1: one after another in the caller's thread, the deterministic schedule of the simulator, the tests
    and the local runtime at concurrency 1). Every call runs to its end, then the first error in the items' order
    is raised: a failed request never hides behind a later success. Each call runs in a copy of the caller's context
    (contextvars) marked with its wave (`sdk.WAVE`, for the trace), so that what the delivery set there (the chaos
    harness's fault state) holds in its requests too."""

    def __init__(self, width: int = 1):
        self.width = width

    def map(self, call: Callable[[Item], Answer], items: Iterable[Item]) -> list[Answer]:
        items = list(items)
        if self.width <= 1 or len(items) <= 1:
            return [call(item) for item in items]
        futures = []
        for first in range(0, len(items), self.width):
            wave, marker = items[first : first + self.width], object()
            with ThreadPoolExecutor(max_workers=len(wave), thread_name_prefix=REQUEST_THREADS) as pool:
                for item in wave:
                    context = contextvars.copy_context()  # one per call: a context runs in one thread at a time
                    context.run(WAVE.set, marker)
                    futures.append(pool.submit(context.run, call, item))
        return [future.result() for future in futures]  # each pool's exit waited for its wave; first error first


@dataclass
class Ports:
    """Everything a handler may touch in AWS."""

    table: RunTable
    notifier: SnsNotifier
    invoker: Invoker
    counter: IoCounter
    store: S3ObjectStore | None = None
    # Epoch seconds, for leases and stall judgements. Lambda's is the wall clock; the local runtime's adds the
    # time its virtual delivery clock skipped (retry back-offs), so that a lease expires before a retry as in AWS.
    clock: Callable[[], float] = time.time
    # How independent requests go out: concurrently in Lambda; one after another by default for whoever brings
    # their own invoker (the tests, the simulator), the local runtime sets its own (`lnn_cli.cloud.runtime`).
    fan_out: RequestFanOut = field(default_factory=RequestFanOut)
    # The other functions of the stack this one invokes, by role (`FUNCTION_ENVIRONMENT`): the trainer's kick of
    # the watchdog at a sweep trial's end, the watchdog's launches of a sweep's queued trials.
    functions: dict[str, Invoker] = field(default_factory=dict)
    # How a delivery waits for its peers (`protocol.staying`): a real sleep in Lambda and the local runtime, the
    # simulator's own in virtual time; `waiting()` spans a whole wait (the local runtime's mark of a waiting delivery).
    wait: Callable[[float], None] = time.sleep
    waiting: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    @classmethod
    def from_environment(
        cls,
        *,
        invoke_target: str,
        session: boto3.Session | None = None,
        invoker: Invoker | None = None,
        clock: Callable[[], float] | None = None,
        functions: dict[str, Invoker] | None = None,
    ) -> "Ports":
        """Adapters for the resources named in the environment; `invoke_target` is the env var naming the function
        to invoke. Whoever brings its own `invoker` (the local runtime, the tests) brings the `functions` too; else
        each function `FUNCTION_ENVIRONMENT` names in the environment gets a Lambda invoker."""

        session = session or boto3.Session()
        counter = IoCounter()
        bucket = os.environ.get("LNN_BUCKET")
        pooled = Config(max_pool_connections=CONCURRENT_REQUESTS)
        dynamodb = session.resource("dynamodb", config=CLAIM_BOTO_CONFIG)
        trace_requests(dynamodb.meta.client, counter)
        in_lambda = invoker is None
        if in_lambda:
            lambda_client = trace_requests(session.client("lambda", config=CLAIM_BOTO_CONFIG.merge(pooled)), counter)
            invoker = LambdaInvoker(lambda_client, _required(invoke_target), counter)
            functions = {
                role: LambdaInvoker(lambda_client, os.environ[name], counter)
                for role, name in FUNCTION_ENVIRONMENT.items()
                if os.environ.get(name)
            }
        return cls(
            table=RunTable(dynamodb.Table(_required("LNN_TABLE")), counter),
            notifier=SnsNotifier(
                trace_requests(session.client("sns", config=CLAIM_BOTO_CONFIG), counter),
                _required("LNN_TOPIC_ARN"),
                counter,
            ),
            invoker=invoker,
            counter=counter,
            store=S3ObjectStore(
                trace_requests(session.client("s3", config=BOTO_CONFIG.merge(pooled)), counter), bucket, counter
            )
            if bucket
            else None,
            clock=clock or time.time,
            fan_out=RequestFanOut(CONCURRENT_REQUESTS if in_lambda else 1),
            functions=dict(functions or {}),
        )


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set; the LnnTrainer construct sets it")
    return value
