"""The synthesized template with default settings: every resource and output, no dependency cycle, and the stores
(the bucket, the table, the topic, the dead-letter queue and the layer). The functions are in
test_template_functions.py, the permissions in test_template_iam.py."""

import json

from tests.infrastructure.conftest import arn, ref


def test_exactly_these_resources_and_no_custom_resource(synthesized):
    counts = {}
    for resource in synthesized.resources.values():
        counts[resource["Type"]] = counts.get(resource["Type"], 0) + 1
    assert counts == {
        "AWS::S3::Bucket": 1,
        "AWS::S3::BucketPolicy": 1,
        "AWS::DynamoDB::Table": 1,
        "AWS::SNS::Topic": 1,
        "AWS::SNS::TopicPolicy": 1,
        "AWS::Lambda::LayerVersion": 1,
        "AWS::Logs::LogGroup": 4,
        "AWS::IAM::Role": 4,
        "AWS::IAM::Policy": 5,
        "AWS::Lambda::Function": 4,
        "AWS::Lambda::EventInvokeConfig": 3,
        "AWS::Events::Rule": 2,
        "AWS::Lambda::Permission": 2,
        "AWS::CloudWatch::Alarm": 2,
        "AWS::CloudWatch::Dashboard": 1,
        "AWS::SQS::Queue": 1,
        "AWS::SQS::QueuePolicy": 1,
    }
    assert not [key for key, resource in synthesized.resources.items() if resource["Type"].startswith("Custom::")]


def test_bucket(synthesized, ids):
    bucket = synthesized.resources[ids["bucket"]]
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
    assert bucket["Properties"] == {
        # An overwritten or deleted data.npz, parameters.json or model.npz can be restored for 7 days.
        "VersioningConfiguration": {"Status": "Enabled"},
        "BucketEncryption": {
            "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        },
        # S3 -> EventBridge, set on the L1: no Custom::S3BucketNotifications.
        "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
        "LifecycleConfiguration": {
            "Rules": [
                # The scratch churns: its old versions go after a day.
                {
                    "Id": "ExpireRunScratch",
                    "Status": "Enabled",
                    "ExpirationInDays": 7,
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                    "TagFilters": [{"Key": "lnn-scratch", "Value": "true"}],
                },
                {
                    "Id": "RunsOldVersionsAndUploads",
                    "Status": "Enabled",
                    "Prefix": "runs/",
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
                    "ExpiredObjectDeleteMarker": True,
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                },
            ]
        },
    }


def test_scratch_tag_matches_the_engine(synthesized):
    from lnn_core.aws.ports import SCRATCH_TAG
    from lnn_stack.storage import SCRATCH_TAG_KEY, SCRATCH_TAG_VALUE

    assert SCRATCH_TAG == f"{SCRATCH_TAG_KEY}={SCRATCH_TAG_VALUE}"


def test_table(synthesized, ids):
    table = synthesized.resources[ids["table"]]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert table["Properties"] == {
        "KeySchema": [{"AttributeName": "run_id", "KeyType": "HASH"}, {"AttributeName": "epoch", "KeyType": "RANGE"}],
        "AttributeDefinitions": [
            {"AttributeName": "run_id", "AttributeType": "S"},
            {"AttributeName": "epoch", "AttributeType": "N"},
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "message_due", "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "runs-by-status",
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
            {  # sparse: only ended runs whose message is still owed have `message_due`
                "IndexName": "runs-awaiting-message",
                "KeySchema": [{"AttributeName": "message_due", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
    }


def test_topic_has_no_subscription_without_an_email(synthesized):
    assert synthesized.of_type("AWS::SNS::Topic")
    assert not synthesized.of_type("AWS::SNS::Subscription")


def test_layer(synthesized, ids):
    properties = synthesized.resources[ids["layer"]]["Properties"]
    assert properties["CompatibleRuntimes"] == ["python3.14"]
    assert properties["CompatibleArchitectures"] == ["arm64"]
    assert properties["Description"] == (
        "numpy==2.4.6, aws-lambda-powertools==3.37.0 for Python 3.14 on manylinux_2_28_aarch64"
    )


def test_outputs_are_the_contract_names(synthesized, ids):
    assert {name: output["Value"] for name, output in synthesized.outputs.items()} == {
        "BucketName": ref(ids["bucket"]),
        "TableName": ref(ids["table"]),
        "TopicArn": ref(ids["topic"]),
        "TrainerFunctionName": ref(ids["trainer"]),
        "LaunchFunctionName": ref(ids["launcher"]),
        "WatchdogFunctionName": ref(ids["watchdog"]),
        "PredictFunctionName": ref(ids["predictor"]),
        "DashboardName": ref(ids["dashboard"]),
    }


def test_no_dependency_cycle(synthesized):
    """CloudFormation rejects a template whose resources depend on each other in a circle."""

    def references(node):
        if isinstance(node, dict):
            if "Ref" in node:
                yield node["Ref"]
            if "Fn::GetAtt" in node:
                yield node["Fn::GetAtt"][0]
            for value in node.values():
                yield from references(value)
        elif isinstance(node, list):
            for value in node:
                yield from references(value)

    graph = {
        key: {
            dep
            for dep in [*references(resource.get("Properties", {})), *resource.get("DependsOn", [])]
            if dep in synthesized.resources
        }
        for key, resource in synthesized.resources.items()
    }
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {key for key, deps in graph.items() if key not in done and deps <= done}
        assert ready, f"dependency cycle among {sorted(set(graph) - done)}"
        done |= ready


def test_dead_letter_queue_is_encrypted_tls_only_and_keeps_messages_14_days(synthesized, ids):
    queue = synthesized.resources[ids["dlq"]]
    assert queue["Properties"] == {"MessageRetentionPeriod": 14 * 24 * 3600, "SqsManagedSseEnabled": True}
    (policy,) = synthesized.of_type("AWS::SQS::QueuePolicy").values()
    assert policy["Properties"]["Queues"] == [ref(ids["dlq"])]
    deny, *allows = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny == {
        "Action": "sqs:*",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": arn(ids["dlq"]),
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    # Only the two rules may send their undeliverable events (the watchdog sends through its role).
    assert sorted(
        (a["Principal"], a["Action"], a["Resource"] == arn(ids["dlq"]), json.dumps(a["Condition"], sort_keys=True))
        for a in allows
    ) == sorted(
        (
            {"Service": "events.amazonaws.com"},
            "sqs:SendMessage",
            True,
            json.dumps({"ArnEquals": {"aws:SourceArn": arn(ids[rule])}}, sort_keys=True),
        )
        for rule in ("launch_rule", "watchdog_rule")
    )


def test_a_missing_key_still_answers_404_with_list_bucket(monkeypatch):
    """moto does not enforce IAM, so the policy's shape is asserted above; this checks the code's side: a
    GetObject/HeadObject for a missing key answers NoSuchKey/404, which the store maps to "missing"."""
    import boto3
    import pytest
    from botocore.exceptions import ClientError
    from moto import mock_aws

    from lnn_core.aws.ports import S3ObjectStore
    from lnn_core.aws.sdk import IoCounter
    from lnn_core.errors import RunFailure

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="lnn-test")
        client.put_bucket_versioning(Bucket="lnn-test", VersioningConfiguration={"Status": "Enabled"})
        with pytest.raises(ClientError) as caught:
            client.get_object(Bucket="lnn-test", Key="runs/r1/data.npz")
        assert caught.value.response["Error"]["Code"] == "NoSuchKey"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        store = S3ObjectStore(client, "lnn-test", IoCounter())
        assert store.head("runs/r1/state/params-e0000001.npz") is None
        with pytest.raises(RunFailure, match="is missing"):
            store.get_bytes("runs/r1/data.npz")
        # A deleted object (a delete marker in the versioned bucket) answers the same.
        client.put_object(Bucket="lnn-test", Key="runs/r1/state/x.npz", Body=b"x")
        store.delete_keys(["runs/r1/state/x.npz"])
        assert store.head("runs/r1/state/x.npz") is None
