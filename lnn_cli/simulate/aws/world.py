"""The simulated AWS: moto's backends in process, reached either through boto3 (mode "boto": botocore serializes,
moto's stubber dispatches and serializes back) or directly (mode "direct": `direct_clients`, the same moto request
handlers and backends, without the HTTP-shaped round trip). `tests/simulation` runs seeds in both modes and compares
their traces.
"""

from __future__ import annotations

import os
from typing import Any

import boto3

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
        self.keeps_objects = False  # the memoized search's saved states share objects: none is freed then

    @property
    def table(self):
        """moto's table, looked up each time: a canceled TransactWriteItems replaces every table by a copy."""
        return self.dynamodb.get_table(TABLE)

    def reset(self) -> None:
        """Empty the table, the bucket and the topic's record: a fresh AWS for the next schedule."""
        self.table.items.clear()
        for key in list(self.bucket.keys.values()):
            self.dispose(key)
        self.bucket.keys.clear()
        self.sns.topics[self.topic_arn].sent_notifications.clear()

    def dispose(self, key) -> None:
        """Free a replaced or deleted object's buffer, unless a search's saved states may still hold it."""
        if not self.keeps_objects:
            dispose_key(key)

    def untrack_objects(self) -> None:
        """moto keeps every S3 object (and its ACL) it ever made in a list of its own, to free them at its reset: a
        search that keeps its states' objects itself frees them by dropping its states, so the lists go."""
        from moto.core.model_instances import model_data

        for model in model_data["s3"].values():
            model.instances_tracked.clear()

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


def dispose_key(key) -> None:
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
