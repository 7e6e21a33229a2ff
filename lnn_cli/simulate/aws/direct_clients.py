"""The direct clients (mode "direct"): the same moto request handlers and backends as through boto3, without the
HTTP-shaped round trip, which costs ~10 ms a request and would make a schedule 20x slower.

The direct clients keep what the handlers can observe of boto3: the DynamoDB resource's type conversion (Python
values in, Python values out, on the Table and on `Table.meta.client` alike), `ClientError` with the service's error
code (and `CancellationReasons` for a canceled transaction), S3's `NoSuchKey`/`404`/`PreconditionFailed`, and the
idempotency token of TransactWriteItems (botocore fills `ClientRequestToken`; DynamoDB answers a retry with the same
token as the first, without writing again). `tests/simulation` runs seeds in both modes and compares their traces.
"""

from __future__ import annotations

import io
import json
import re
from typing import TYPE_CHECKING, Any

import botocore.session
from boto3.dynamodb.transform import ParameterTransformer
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from lnn_cli.simulate.aws.world import ACCOUNT, REGION

if TYPE_CHECKING:
    from lnn_cli.simulate.aws.request_memo import RequestMemo
    from lnn_cli.simulate.aws.world import MotoWorld

_SERVICE_MODELS: dict[str, Any] = {}


def _operation(service: str, name: str):
    if service not in _SERVICE_MODELS:
        _SERVICE_MODELS[service] = botocore.session.get_session().get_service_model(service)
    return _SERVICE_MODELS[service].operation_model(name)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


class DirectDynamoClient:
    """`dynamodb_resource.meta.client`: every operation the handlers use, with the resource's type conversion."""

    OPERATIONS = (
        "get_item",
        "put_item",
        "update_item",
        "delete_item",
        "query",
        "scan",
        "batch_write_item",
        "batch_get_item",
        "transact_write_items",
        "transact_get_items",
    )

    def __init__(self, tokens: dict | None = None, memo: RequestMemo | None = None):
        self._memo = memo  # the exhaustive search's: moto asked once per request and table contents
        self._transformer = ParameterTransformer()
        self._serialize, self._deserialize = TypeSerializer().serialize, TypeDeserializer().deserialize
        self._tokens = {} if tokens is None else tokens  # ClientRequestToken -> the first call's answer

    def __getattr__(self, name: str):
        if name not in self.OPERATIONS:
            raise AttributeError(name)
        return lambda **params: self._call(name, params)

    def _call(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        from moto.dynamodb.exceptions import DynamodbException
        from moto.dynamodb.responses import DynamoHandler

        operation = _operation("dynamodb", _camel(name))
        wire = _copied(params)
        self._transformer.transform(wire, operation.input_shape, self._serialize, "AttributeValue")
        if name == "transact_write_items":
            token = wire.setdefault("ClientRequestToken", params.get("ClientRequestToken") or _next_token())
            if token in self._tokens:  # DynamoDB's idempotency: the same token answers as the first call did
                return _copied(self._tokens[token])

        def run():
            handler = DynamoHandler()
            handler.current_account, handler.region, handler.body = ACCOUNT, REGION, wire
            return getattr(handler, name)().result

        try:
            result = run() if self._memo is None else self._memo.request(name, wire, run)
        except DynamodbException as error:
            error.__traceback__ = None  # (the request memo raises one error again and again: it keeps no frame)
            raise _client_error(error, _camel(name)) from None
        result = _copied(result) if isinstance(result, dict) else {}
        result.pop("ConsumedCapacityUnits", None)
        self._transformer.transform(result, operation.output_shape, self._deserialize, "AttributeValue")
        if name == "transact_write_items":
            self._tokens[wire["ClientRequestToken"]] = result
        return result


def _copied(value: Any) -> Any:
    """A copy of a JSON-like value's containers (its leaves are immutable): what `copy.deepcopy` gives, 5x faster."""
    if isinstance(value, dict):
        return {key: _copied(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_copied(inner) for inner in value]
    if isinstance(value, set):
        return set(value)
    return value


_TOKENS = [0]


def _next_token() -> str:
    _TOKENS[0] += 1
    return f"sim-token-{_TOKENS[0]}"


def reset_tokens() -> None:
    _TOKENS[0] = 0


def _client_error(error, operation: str) -> ClientError:
    code = error.relative_error_type or "ServiceException"
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": getattr(error, "message", str(error))},
        "ResponseMetadata": {"HTTPStatusCode": getattr(error, "code", 400)},
    }
    try:
        described = json.loads(error.description)
    except (TypeError, ValueError):
        described = {}
    if "CancellationReasons" in described:
        response["CancellationReasons"] = described["CancellationReasons"]
    if "Item" in described:
        response["Item"] = described["Item"]
    return ClientError(response, operation)


class DirectTable:
    """`dynamodb_resource.Table(name)`: the Table's actions, with TableName filled in."""

    def __init__(self, name: str, client: DirectDynamoClient):
        self.name, self.table_name = name, name
        self.meta = _Meta(client)
        self._client = client

    def __getattr__(self, name: str):
        if name not in ("get_item", "put_item", "update_item", "delete_item", "query", "scan"):
            raise AttributeError(name)
        return lambda **params: self._client._call(name, {"TableName": self.name, **params})


class _Meta:
    def __init__(self, client):
        self.client = client


class DirectDynamoResource:
    def __init__(self, client: DirectDynamoClient):
        self.meta = _Meta(client)

    def Table(self, name: str) -> DirectTable:
        return DirectTable(name, self.meta.client)


def _byte_range(header: str, size: int) -> tuple[int, int]:
    """The first and last byte of a `Range: bytes=A-B` header (the form the handlers send) within `size` bytes; any
    other form is an error here rather than the whole object, which S3 would not answer."""
    match = re.fullmatch(r"bytes=(\d+)-(\d+)", header)
    if match is None or int(match[1]) > int(match[2]) or int(match[1]) >= size:
        raise ValueError(f"the direct S3 client reads ranges bytes=A-B within the object only; got {header!r}")
    return int(match[1]), min(int(match[2]), size - 1)


class DirectS3Client:
    """The S3 operations the handlers use, on moto's S3 backend."""

    def __init__(self, world: MotoWorld):
        self._world = world

    def _key(self, bucket: str, key: str, operation: str, *, head: bool = False):
        found = self._world.s3.get_bucket(bucket).keys.get(key)
        if found is None or not hasattr(found, "value"):
            code = "404" if head else "NoSuchKey"
            raise ClientError(
                {
                    "Error": {"Code": code, "Message": "Not Found" if head else "The specified key does not exist."},
                    "ResponseMetadata": {"HTTPStatusCode": 404},
                },
                operation,
            )
        return found

    def get_object(self, *, Bucket: str, Key: str, IfMatch: str | None = None, Range: str | None = None, **_):
        found = self._key(Bucket, Key, "GetObject")
        if IfMatch is not None and IfMatch.strip('"') != found.etag.strip('"'):
            raise ClientError(
                {
                    "Error": {
                        "Code": "PreconditionFailed",
                        "Message": "At least one of the pre-conditions you specified did not hold",
                    },
                    "ResponseMetadata": {"HTTPStatusCode": 412},
                },
                "GetObject",
            )
        if Range is None:
            return {"Body": io.BytesIO(found.value), "ETag": found.etag, "ContentLength": found.size}
        first, last = _byte_range(Range, found.size)
        return {
            "Body": io.BytesIO(found.value[first : last + 1]),
            "ETag": found.etag,
            "ContentLength": last + 1 - first,
            "ContentRange": f"bytes {first}-{last}/{found.size}",
        }

    def head_object(self, *, Bucket: str, Key: str, **_):
        found = self._key(Bucket, Key, "HeadObject", head=True)
        return {"ETag": found.etag, "ContentLength": found.size}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, Tagging: str | None = None, **_):
        data = Body if isinstance(Body, bytes) else Body.read()
        keys = self._world.s3.get_bucket(Bucket).keys
        old = keys.get(Key)
        if self._world.keeps_objects:  # else moto frees the replaced object's buffer, which saved states may hold
            dict.pop(keys, Key, None)
        key = self._world.s3.put_object(Bucket, Key, data, disable_notification=True)
        if old is not None and old is not key:
            self._world.dispose(old)
        if self._world.keeps_objects:
            self._world.untrack_objects()
        return {"ETag": key.etag}

    def copy_object(self, *, Bucket: str, Key: str, CopySource: dict[str, str], **_):
        source = self._key(CopySource["Bucket"], CopySource["Key"], "CopyObject")
        return self.put_object(Bucket=Bucket, Key=Key, Body=source.value)

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any], **_):
        bucket = self._world.s3.get_bucket(Bucket)
        for entry in Delete["Objects"]:
            if entry["Key"] in bucket.keys:
                self._world.dispose(bucket.keys.pop(entry["Key"]))
        return {}


class DirectSnsClient:
    def __init__(self, world: MotoWorld):
        self._world = world

    def publish(
        self,
        *,
        TopicArn: str,
        Message: str,
        Subject: str | None = None,
        MessageAttributes: dict | None = None,
        **_,
    ):
        message_id = self._world.sns.publish(
            Message, arn=TopicArn, subject=Subject, message_attributes=MessageAttributes or {}
        )
        return {"MessageId": message_id}
