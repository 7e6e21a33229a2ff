"""The simulated AWS: moto's backends in process, reached either through boto3 (mode "boto": botocore serializes,
moto's stubber dispatches and serializes back) or directly (mode "direct": the same moto request handlers and
backends, without the HTTP-shaped round trip, which costs ~10 ms a request and would make a schedule 20x slower).

The direct clients keep what the handlers can observe of boto3: the DynamoDB resource's type conversion (Python
values in, Python values out, on the Table and on `Table.meta.client` alike), `ClientError` with the service's error
code (and `CancellationReasons` for a canceled transaction), S3's `NoSuchKey`/`404`/`PreconditionFailed`, and the
idempotency token of TransactWriteItems (botocore fills `ClientRequestToken`; DynamoDB answers a retry with the same
token as the first, without writing again). `tests/simulation` runs seeds in both modes and compares their traces.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import boto3
import botocore.session
from boto3.dynamodb.transform import ParameterTransformer
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
BUCKET = "lnn-sim-bucket"
TABLE = "lnn-sim-results"
TOPIC = "lnn-sim-notifications"
TRAINER = "lnn-sim-trainer"
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "LNN_BUCKET": BUCKET,
    "LNN_TABLE": TABLE,
    "LNN_TRAINER_FUNCTION": TRAINER,
    "AWS_LAMBDA_FUNCTION_NAME": TRAINER,
    "LNN_TRAINING_DEFAULTS": "{}",
}


def table_definition() -> dict[str, Any]:
    """The results table as the stack creates it: run records and epoch items, and the sparse keys-only indexes of
    runs by status and of ended runs still owed their message."""
    from lnn_core.aws import run_record

    attributes = [
        {"AttributeName": "run_id", "AttributeType": "S"},
        {"AttributeName": "epoch", "AttributeType": "N"},
        {"AttributeName": "status", "AttributeType": "S"},
    ]
    indexes = [
        {
            "IndexName": run_record.RUNS_BY_STATUS_INDEX,
            "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    ]
    attributes.append({"AttributeName": run_record.MESSAGE_DUE, "AttributeType": "S"})
    indexes.append(
        {
            "IndexName": run_record.RUNS_AWAITING_MESSAGE_INDEX,
            "KeySchema": [{"AttributeName": run_record.MESSAGE_DUE, "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    )
    return {
        "TableName": TABLE,
        "KeySchema": [{"AttributeName": "run_id", "KeyType": "HASH"}, {"AttributeName": "epoch", "KeyType": "RANGE"}],
        "AttributeDefinitions": attributes,
        "BillingMode": "PAY_PER_REQUEST",
        "GlobalSecondaryIndexes": indexes,
    }


class MotoWorld:
    """One in-process AWS (mock_aws) with the stack's bucket, table and topic, reset cheaply between schedules."""

    def __init__(self):
        from moto import mock_aws

        self._saved_env = {name: os.environ.get(name) for name in [*ENVIRONMENT, "LNN_TOPIC_ARN", "AWS_ENDPOINT_URL"]}
        os.environ.update(ENVIRONMENT)
        os.environ.pop("AWS_ENDPOINT_URL", None)
        self._mock = mock_aws()
        self._mock.start()
        self.session = boto3.Session(region_name=REGION)
        self.session.client("s3").create_bucket(Bucket=BUCKET)
        self.session.client("dynamodb").create_table(**table_definition())
        self.topic_arn = self.session.client("sns").create_topic(Name=TOPIC)["TopicArn"]
        os.environ["LNN_TOPIC_ARN"] = self.topic_arn
        from moto.dynamodb.models import dynamodb_backends
        from moto.s3.models import s3_backends
        from moto.sns.models import sns_backends

        self.dynamodb = dynamodb_backends[ACCOUNT][REGION]
        self.s3 = s3_backends[ACCOUNT]["aws"] if "aws" in s3_backends[ACCOUNT] else s3_backends[ACCOUNT]["global"]
        self.sns = sns_backends[ACCOUNT][REGION]
        self.bucket = self.s3.get_bucket(BUCKET)

    @property
    def table(self):
        """moto's table, looked up each time: a canceled TransactWriteItems replaces every table by a copy."""
        return self.dynamodb.get_table(TABLE)

    def reset(self) -> None:
        """Empty the table, the bucket and the topic's record: a fresh AWS for the next schedule."""
        self.table.items.clear()
        for key in list(self.bucket.keys.values()):
            _dispose(key)
        self.bucket.keys.clear()
        self.sns.topics[self.topic_arn].sent_notifications.clear()

    def close(self) -> None:
        self._mock.stop()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    # ---- direct reads for the invariants (no request, no copy) ------------------------------------------------

    def record(self, run_id: str) -> dict[str, Any] | None:
        """The run record's attributes as plain values (numbers as floats or ints)."""
        item = self.item(run_id, 0)
        return None if item is None else {name: _plain(value) for name, value in item.attrs.items()}

    def fields(self, run_id: str, *names: str) -> dict[str, Any] | None:
        """Some of the run record's attributes as plain values (cheaper than `record`)."""
        item = self.item(run_id, 0)
        if item is None:
            return None
        return {name: _plain(item.attrs[name]) for name in names if name in item.attrs}

    def item(self, run_id: str, epoch: int):
        from moto.dynamodb.models.dynamo_type import DynamoType

        by_range = self.table.items.get(DynamoType({"S": run_id}))
        return None if by_range is None else by_range.get(DynamoType({"N": str(epoch)}))

    def epoch_items(self, run_id: str) -> dict[tuple[str, int], Any]:
        """The run's epoch items by key (partition, epoch): each epoch's figures item (in the run's partition) and
        weights item (in its weights partition)."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        from lnn_core.aws.epoch_items import weights_partition

        return {
            (partition, int(key.value)): item
            for partition in (run_id, weights_partition(run_id))
            for key, item in (self.table.items.get(DynamoType({"S": partition})) or {}).items()
            if int(key.value) > 0
        }

    def object(self, key: str) -> bytes | None:
        found = self.bucket.keys.get(key)
        return None if found is None or not hasattr(found, "value") else found.value

    def keys(self) -> list[str]:
        return list(self.bucket.keys.keys())


def _dispose(key) -> None:
    try:
        key.dispose()
    except Exception:
        pass


def _plain(value) -> Any:
    """A moto DynamoType as a plain Python value."""
    kind, raw = value.type, value.value
    if kind == "N":
        number = float(raw)
        return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number
    if kind in ("S", "BOOL"):
        return raw
    if kind == "NULL":
        return None
    if kind == "M":
        return {name: _plain(inner) for name, inner in raw.items()}
    if kind == "L":
        return [_plain(inner) for inner in raw]
    if kind in ("SS", "NS", "BS"):
        return set(raw)
    return raw


# ---- direct clients --------------------------------------------------------------------------------------------

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

    def __init__(self, tokens: dict | None = None):
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
        handler = DynamoHandler()
        handler.current_account, handler.region, handler.body = ACCOUNT, REGION, wire
        try:
            result = getattr(handler, name)().result
        except DynamodbException as error:
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

    def get_object(self, *, Bucket: str, Key: str, IfMatch: str | None = None, **_):
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
        return {"Body": io.BytesIO(found.value), "ETag": found.etag, "ContentLength": found.size}

    def head_object(self, *, Bucket: str, Key: str, **_):
        found = self._key(Bucket, Key, "HeadObject", head=True)
        return {"ETag": found.etag, "ContentLength": found.size}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, Tagging: str | None = None, **_):
        data = Body if isinstance(Body, bytes) else Body.read()
        old = self._world.s3.get_bucket(Bucket).keys.get(Key)
        key = self._world.s3.put_object(Bucket, Key, data, disable_notification=True)
        if old is not None and old is not key:
            _dispose(old)
        return {"ETag": key.etag}

    def copy_object(self, *, Bucket: str, Key: str, CopySource: dict[str, str], **_):
        source = self._key(CopySource["Bucket"], CopySource["Key"], "CopyObject")
        return self.put_object(Bucket=Bucket, Key=Key, Body=source.value)

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any], **_):
        bucket = self._world.s3.get_bucket(Bucket)
        for entry in Delete["Objects"]:
            if entry["Key"] in bucket.keys:
                _dispose(bucket.keys.pop(entry["Key"]))
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


def published(world: MotoWorld) -> list[dict[str, Any]]:
    """The bodies of every message published to the topic, in order."""
    topic = world.sns.topics[world.topic_arn]
    bodies = []
    for notification in topic.sent_notifications:
        message = notification[1] if isinstance(notification, tuple) else notification
        try:
            bodies.append(json.loads(message))
        except (TypeError, ValueError):
            bodies.append({"raw": message})
    return bodies
