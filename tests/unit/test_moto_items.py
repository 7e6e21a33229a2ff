"""The embedded AWS's answers to DynamoDB's item operations (`lnn_cli.cloud.moto_items`) are moto's own: the same
requests give the same answers with it installed and without."""

from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from moto import mock_aws

from lnn_cli.cloud import moto_items

RECORD = {
    "run_id": "r",
    "epoch": 0,
    "status": "running",
    "committed_step": 7,
    "cost": Decimal("0.693147180559945"),
    "config": {"neurons": {"layer1": 4, "layer2": 1}, "dtype": "float64", "l2": 0, "threshold": None, "ok": True},
    "next_event": {"run_id": "r", "step": 8, "shard": 1, "shards": 2},
    "shards_done": {Decimal(0), Decimal(1)},
    "names": {"a", "b"},
    "weights": [[Decimal("0.5"), Decimal("-1.25")], [Decimal("3")]],
    "blob": b"\x00\x01\xffbytes",
    "blobs": {b"\x00", b"\x01"},
    "empty_list": [],
    "empty_map": {},
    "nothing": None,
    "yes": False,
}


def answers(installed: bool) -> list:
    was = moto_items.install(installed)
    assert moto_items.installed() == installed
    try:
        with mock_aws():
            resource = boto3.resource("dynamodb", region_name="us-east-1")
            table = resource.create_table(
                TableName="t",
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[
                    {"AttributeName": "run_id", "KeyType": "HASH"},
                    {"AttributeName": "epoch", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "run_id", "AttributeType": "S"},
                    {"AttributeName": "epoch", "AttributeType": "N"},
                ],
            )
            got = [table.put_item(Item=RECORD, ReturnValues="ALL_OLD")]
            for epoch in range(1, 4):
                got.append(table.put_item(Item={"run_id": "r", "epoch": epoch, "cost": Decimal(epoch) / 3}))
            got += [
                table.get_item(Key={"run_id": "r", "epoch": 0}, ConsistentRead=True),
                table.get_item(Key={"run_id": "r", "epoch": 9}),  # no such item
                table.get_item(Key={"run_id": "r", "epoch": 0}, ProjectionExpression="config.neurons, shards_done"),
                table.query(KeyConditionExpression=Key("run_id").eq("r"), Limit=2),  # with LastEvaluatedKey
                table.query(KeyConditionExpression=Key("run_id").eq("r") & Key("epoch").gt(0), Select="COUNT"),
                table.scan(),
            ]
            for shard, returned in enumerate(("NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"), start=2):
                got.append(
                    table.update_item(
                        Key={"run_id": "r", "epoch": 0},
                        UpdateExpression="ADD shards_done :shard SET committed_step = :step",
                        ConditionExpression="#status = :running",
                        ExpressionAttributeNames={"#status": "status"},
                        ExpressionAttributeValues={
                            ":shard": {Decimal(shard)},
                            ":step": 8 + shard,
                            ":running": "running",
                        },
                        ReturnValues=returned,
                    )
                )
            got.append(resource.batch_get_item(RequestItems={"t": {"Keys": [{"run_id": "r", "epoch": 1}]}}))
            got.append(table.delete_item(Key={"run_id": "r", "epoch": 3}, ReturnValues="ALL_OLD"))
            with pytest.raises(ClientError) as refused:  # an error answer
                table.update_item(
                    Key={"run_id": "r", "epoch": 0},
                    UpdateExpression="SET committed_step = :nine",
                    ConditionExpression="committed_step = :seven",
                    ExpressionAttributeValues={":nine": 9, ":seven": 7},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            got.append(refused.value.response["Error"])
    finally:
        moto_items.install(was)
    for answer in got:
        answer.pop("ResponseMetadata", None)
    return got


def test_item_answers_are_moto_s_own():
    assert answers(True) == answers(False)
