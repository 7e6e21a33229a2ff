"""The embedded AWS's TransactWriteItems (`lnn_cli.cloud.moto_transactions`) answers as moto's own: the same
requests against both give the same answers and leave the same items, committed or canceled."""

from decimal import Decimal

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from lnn_cli.cloud import moto_transactions
from tests.support.tables import run_keyed_table

RECORD = {"run_id": "r", "epoch": 0, "committed_step": 3, "status": "running"}


def check(step):
    return {
        "ConditionCheck": {
            "TableName": "t",
            "Key": {"run_id": "r", "epoch": 0},
            "ConditionExpression": "committed_step = :previous AND #status = :running",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":previous": step - 1, ":running": "running"},
        }
    }


def put(epoch, cost, condition=None):
    action = {
        "Put": {
            "TableName": "t",
            "Item": {"run_id": "r", "epoch": epoch, "cost": Decimal(cost), "weights": [[Decimal("0.5")] * 3] * 2},
        }
    }
    if condition:
        action["Put"]["ConditionExpression"] = condition
    return action


REQUESTS = [
    [check(4), put(1, "0.7"), put(2, "0.6")],  # committed
    [check(5), put(3, "0.5"), put(1, "9.9")],  # canceled by its check: nothing of it stays, item 1 keeps 0.7
    [check(4), put(4, "0.4"), put(1, "0.3", "attribute_not_exists(run_id)")],  # canceled by its last put
    [check(4), put(5, "0.2"), put(5, "0.1")],  # two actions on one item: a validation error, nothing written
    [check(4), put(2, "0.45")],  # committed: replaces item 2
]


def answers_and_items(patched: bool):
    was = moto_transactions.install(patched)
    assert moto_transactions.installed() == patched
    try:
        with mock_aws():
            table = run_keyed_table(boto3.resource("dynamodb", region_name="us-east-1"))
            table.put_item(Item=RECORD)
            answers = []
            for request in REQUESTS:
                try:
                    table.meta.client.transact_write_items(TransactItems=request)
                    answers.append("ok")
                except ClientError as error:
                    answers.append((error.response["Error"]["Code"], error.response.get("CancellationReasons")))
            items = sorted(table.scan()["Items"], key=lambda item: item["epoch"])
            return answers, items
    finally:
        moto_transactions.install(was)


def test_the_patched_transaction_answers_and_writes_as_motos_own():
    own, patched = answers_and_items(patched=False), answers_and_items(patched=True)
    assert patched == own
    answers, items = patched
    assert answers[0] == "ok" and answers[1][0] == "TransactionCanceledException" and answers[4] == "ok"
    assert [(item["epoch"], item.get("cost")) for item in items] == [
        (0, None),
        (1, Decimal("0.7")),
        (2, Decimal("0.45")),
    ]


@pytest.mark.parametrize("patched", [False, True])
def test_a_canceled_transaction_leaves_no_trace(patched):
    answers, items = answers_and_items(patched)
    assert 3 not in [item["epoch"] for item in items] and 4 not in [item["epoch"] for item in items]
