"""The embedded AWS's answers to DynamoDB's item operations (`lnn_cli.cloud.moto_items`) are moto's own: the same
requests give the same bodies, byte for byte, with it installed and without, and it writes every answer it may."""

from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from moto import mock_aws

from lnn_cli.cloud import moto_items
from tests.support.tables import run_keyed_table

RECORD = {  # a run record's kinds of values, binary apart
    "run_id": "r",
    "epoch": 0,
    "status": "running",
    "committed_step": 7,
    "cost": Decimal("0.693147180559945"),
    "big": Decimal("12345678901234567890123456789012345678"),
    "text": "é ü 中 ",
    "empty": "",
    "config": {"neurons": {"layer1": 4, "layer2": 1}, "dtype": "float64", "threshold": None, "ok": True},
    "next_event": {"run_id": "r", "step": 8, "shard": 1, "shards": 2},
    "shards_done": {Decimal(0), Decimal(1)},
    "names": {"a", "b"},
    "weights": [[Decimal("0.5"), Decimal("-1.25")], [Decimal("3")], []],
    "empty_map": {},
    "nothing": None,
    "yes": False,
}
BINARY = {"run_id": "r", "epoch": -1, "blob": b"\x00\x01\xffbytes", "blobs": {b"\x00", b"\x01"}, "in": {"b": b"\x02"}}


def requests(table, resource) -> None:
    """Every item operation LNN makes, and the other answers of each, in one run."""
    table.put_item(Item=RECORD, ReturnValues="ALL_OLD")
    table.put_item(Item=BINARY)
    for epoch in range(1, 4):
        table.put_item(Item={"run_id": "r", "epoch": epoch, "cost": Decimal(epoch) / 3})
    table.get_item(Key={"run_id": "r", "epoch": 0}, ConsistentRead=True)
    table.get_item(Key={"run_id": "r", "epoch": 9})  # no such item
    table.get_item(Key={"run_id": "r", "epoch": 0}, ProjectionExpression="config.neurons, shards_done")
    table.get_item(Key={"run_id": "r", "epoch": -1})  # bytes: moto's serializer
    table.get_item(Key={"run_id": "r", "epoch": 0}, ReturnConsumedCapacity="TOTAL")  # moto's serializer
    table.query(KeyConditionExpression=Key("run_id").eq("r") & Key("epoch").gte(0), Limit=2)  # LastEvaluatedKey
    table.query(KeyConditionExpression=Key("run_id").eq("r") & Key("epoch").gt(0), Select="COUNT")
    table.query(KeyConditionExpression=Key("run_id").eq("r") & Key("epoch").gt(0), ScanIndexForward=False)
    table.scan(FilterExpression="epoch > :zero", ExpressionAttributeValues={":zero": 0})
    for shard, returned in enumerate(("NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"), start=2):
        table.update_item(
            Key={"run_id": "r", "epoch": 0},
            UpdateExpression="ADD shards_done :shard SET committed_step = :step",
            ConditionExpression="#status = :running",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":shard": {Decimal(shard)}, ":step": 8 + shard, ":running": "running"},
            ReturnValues=returned,
        )
    resource.batch_get_item(RequestItems={"t": {"Keys": [{"run_id": "r", "epoch": 1}, {"run_id": "r", "epoch": 2}]}})
    table.delete_item(Key={"run_id": "r", "epoch": 3}, ReturnValues="ALL_OLD")
    table.delete_item(Key={"run_id": "r", "epoch": 2})
    with pytest.raises(ClientError):  # an error answer
        table.update_item(
            Key={"run_id": "r", "epoch": 0},
            UpdateExpression="SET committed_step = :nine",
            ConditionExpression="committed_step = :seven",
            ExpressionAttributeValues={":nine": 9, ":seven": 7},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )


def answer_bodies(installed: bool) -> list[tuple[str, int, bytes]]:
    """The (operation, status, raw body) of every answer to `requests`."""
    was = moto_items.install(installed)
    assert moto_items.installed() == installed
    bodies = []

    def keep(operation_model, response_dict, **_):
        bodies.append((operation_model.name, response_dict["status_code"], response_dict["body"]))

    try:
        with mock_aws():
            resource = boto3.resource("dynamodb", region_name="us-east-1")
            table = run_keyed_table(resource)
            resource.meta.client.meta.events.register("before-parse.dynamodb.*", keep)
            requests(table, resource)
    finally:
        moto_items.install(was)
    return bodies


def test_item_answers_are_moto_s_own_byte_for_byte(monkeypatch):
    written = []  # whether each item answer went out as it is
    judge = moto_items._as_they_are
    monkeypatch.setattr(moto_items, "_as_they_are", lambda *args: written.append(judge(*args)) or written[-1])
    assert answer_bodies(True) == answer_bodies(False)
    # as they are: the 5 PutItems, 3 GetItems, 3 Querys and the Scan; through moto's serializer: the binary item,
    # and the answers with consumed capacity (moto adds it to every UpdateItem, BatchGetItem and DeleteItem) or with
    # a key outside the output shape (DeleteItem's); the error reaches no serializer
    assert written == [True] * 8 + [False, False] + [True] * 4 + [False] * 8
