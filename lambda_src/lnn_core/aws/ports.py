"""The AWS adapters LNN's logic talks to: object store (S3), notifier (SNS), invoker (Lambda),
and `Ports`, which bundles them with the run table (DynamoDB, run_table.py).

They are passed in, so the same handler runs in Lambda, in tests (moto) and in the local runtime (which swaps
only the invoker). Every adapter counts its requests and bytes in a shared `IoCounter`.
"""

import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import boto3
from botocore.exceptions import ClientError

from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import BOTO_CONFIG, CLAIM_BOTO_CONFIG, IoCounter
from lnn_core.errors import RunFailure

SCRATCH_TAG = "lnn-scratch=true"  # the bucket's lifecycle rule expires objects with this tag
ASYNC_PAYLOAD_LIMIT = 1_048_576  # bytes, Lambda's limit for an asynchronous invoke

# The methods whose calls change the world: the chaos harness injects crashes around exactly these.
EFFECTS = {
    "store": ("put_bytes", "copy", "delete_keys"),
    "table": ("create_run", "mark_started", "transition", "claim_send", "mark_invoked", "claim_notification",
              "mark_notified", "put_epoch_items", "request_stop", "record_resume", "continue_stopped", "refresh_heartbeat",
              "join_barrier", "claim_reduce"),
    "notifier": ("publish",),
    "invoker": ("invoke_async",),
}


class S3ObjectStore:
    """Objects under one bucket. Reads of immutable keys (training state) are cached in memory, least recently
    used first out."""

    def __init__(self, client, bucket: str, counter: IoCounter, *, cache_bytes: int = 256 * 2**20):
        self._client, self.bucket, self._counter = client, bucket, counter
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_limit, self._cached = cache_bytes, 0

    def get_bytes(self, key: str, *, etag: str | None = None, cache: bool = True) -> bytes:
        """The object's bytes. With `etag`, only that version: a changed object is a `RunFailure`."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        request = {"Bucket": self.bucket, "Key": key} | ({"IfMatch": etag} if etag else {})
        self._counter.requests["s3"] += 1
        self._counter.priced["s3_reads"] += 1
        try:
            data = self._client.get_object(**request)["Body"].read()
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in ("NoSuchKey", "404"):
                raise RunFailure(f"s3 object {key} is missing") from error
            if code in ("PreconditionFailed", "412"):
                raise RunFailure(f"s3 object {key} changed during the run (ETag is no longer {etag})") from error
            raise
        self._counter.s3_bytes_in += len(data)
        if cache:
            self._remember(key, data)
        return data

    def head(self, key: str) -> tuple[str, int] | None:
        """The object's (ETag, size in bytes), or None when it does not exist."""
        self._counter.requests["s3"] += 1
        self._counter.priced["s3_reads"] += 1
        try:
            answer = self._client.head_object(Bucket=self.bucket, Key=key)
            return answer["ETag"], int(answer["ContentLength"])
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def put_bytes(self, key: str, data: bytes, *, scratch: bool = False) -> None:
        """Write an object; `scratch` objects are tagged for the lifecycle rule that expires them."""
        self._counter.requests["s3"] += 1
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data, **({"Tagging": SCRATCH_TAG} if scratch else {}))
        self._counter.s3_bytes_out += len(data)
        self._remember(key, data)

    def copy(self, source: str, destination: str) -> bool:
        """Copy an object within the bucket (server side: its bytes do not pass through this function). False when
        the source does not exist."""
        self._counter.requests["s3"] += 1
        try:
            self._client.copy_object(Bucket=self.bucket, Key=destination, CopySource={"Bucket": self.bucket, "Key": source})
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return False
            raise
        return True

    def delete_keys(self, keys: list[str]) -> None:
        """Delete objects (missing ones are fine), up to 1000 a request."""
        for key in keys:
            if key in self._cache:
                self._cached -= len(self._cache.pop(key))
        for start in range(0, len(keys), 1000):
            self._counter.requests["s3"] += 1
            self._counter.priced["s3_deletes"] += 1
            chunk = keys[start : start + 1000]
            self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})

    def list_objects(self, prefix: str) -> dict[str, tuple[str, int]]:
        """Every object under `prefix`: key -> (ETag, size in bytes)."""
        listed: dict[str, tuple[str, int]] = {}
        request = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            self._counter.requests["s3"] += 1
            answer = self._client.list_objects_v2(**request)
            listed |= {item["Key"]: (item["ETag"], int(item["Size"])) for item in answer.get("Contents", [])}
            if not answer.get("IsTruncated"):
                return listed
            request["ContinuationToken"] = answer["NextContinuationToken"]

    def get_range(self, key: str, start: int, stop: int, *, etag: str) -> bytes:
        """Bytes start .. stop - 1 of the object of ETag `etag` (a changed or missing object is a `RunFailure`)."""
        self._counter.requests["s3"] += 1
        self._counter.priced["s3_reads"] += 1
        try:
            data = self._client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{stop - 1}", IfMatch=etag)["Body"].read()
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404", "PreconditionFailed", "412"):
                raise RunFailure(f"s3 object {key} is missing or changed (ETag is no longer {etag})") from error
            raise
        self._counter.s3_bytes_in += len(data)
        return data

    def _remember(self, key: str, data: bytes) -> None:
        if len(data) > self._cache_limit:
            return
        if key in self._cache:
            self._cached -= len(self._cache.pop(key))
        self._cache[key] = data
        self._cached += len(data)
        while self._cached > self._cache_limit:
            self._cached -= len(self._cache.popitem(last=False)[1])


class SnsNotifier:
    def __init__(self, client, topic_arn: str, counter: IoCounter):
        self._client, self.topic_arn, self._counter = client, topic_arn, counter

    def publish(self, *, subject: str, body: dict[str, Any], status: str, message_id: str | None = None) -> None:
        """One message: a readable subject, a JSON body, and a `status` attribute for subscription filters. With
        `message_id`, the same in the body and as an attribute: a standard topic delivers a retried Publish twice,
        and a subscriber drops the second by this key."""
        self._counter.requests["sns"] += 1
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
        self._counter.requests["lambda"] += 1
        self._client.invoke(FunctionName=self.function_name, InvocationType="Event", Payload=body)


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

    @classmethod
    def from_environment(
        cls, *, invoke_target: str, session: boto3.Session | None = None, invoker: Invoker | None = None,
        clock: Callable[[], float] | None = None,
    ) -> "Ports":
        """Adapters for the resources named in the environment; `invoke_target` is the env var naming the function
        to invoke."""

        session = session or boto3.Session()
        counter = IoCounter()
        bucket = os.environ.get("LNN_BUCKET")
        return cls(
            table=RunTable(session.resource("dynamodb", config=CLAIM_BOTO_CONFIG).Table(_required("LNN_TABLE")), counter),
            notifier=SnsNotifier(session.client("sns", config=CLAIM_BOTO_CONFIG), _required("LNN_TOPIC_ARN"), counter),
            invoker=invoker
            or LambdaInvoker(session.client("lambda", config=CLAIM_BOTO_CONFIG), _required(invoke_target), counter),
            counter=counter,
            store=S3ObjectStore(session.client("s3", config=BOTO_CONFIG), bucket, counter) if bucket else None,
            clock=clock or time.time,
        )


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set; the LnnTrainer construct sets it")
    return value
