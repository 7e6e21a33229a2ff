"""Shared fixtures: AWS resources under in-process moto, and the adapters the handlers use."""

import json
from collections import deque

import boto3
import botocore.loaders
import botocore.session
import numpy as np
import pytest
from moto import mock_aws

from lnn_cli.cloud import moto_items, moto_transactions
from lnn_core.aws.run_record import (
    MESSAGE_DUE,
    RUNS_AWAITING_MESSAGE_INDEX,
    RUNS_BY_STATUS_INDEX,
)
from tests.support.arrays import npz_bytes

moto_transactions.install()  # the embedded AWS's transactions and item answers, as `lnn local` and `lnn up` run them
moto_items.install()

REGION = "us-east-1"
# botocore parses its service models (large JSON files) once per session: the tests' sessions share one loader, as the
# clients of one long-lived session do, instead of parsing them again for every test (a quarter of a second each).
SERVICE_MODELS = botocore.loaders.create_loader()


def session_sharing_models() -> boto3.Session:
    """A new boto3 session (its own credentials, configuration and event handlers) with the shared parsed models."""
    core = botocore.session.get_session()
    core.register_component("data_loader", SERVICE_MODELS)
    session = boto3.Session(botocore_session=core, region_name=REGION)
    SERVICE_MODELS.search_paths[:] = dict.fromkeys(SERVICE_MODELS.search_paths)  # boto3 adds its path per session
    return session


class QueueInvoker:
    """The invoke transport of the in-process tests: events queue up and `drain` delivers them in order."""

    def __init__(self):
        self.events: deque = deque()

    def invoke_async(self, payload):
        self.events.append(json.loads(json.dumps(payload)))  # the JSON round trip of a real invoke


class FakeClock:
    """A handler clock (`Ports.clock`) that the test moves: Lambda's retry back-offs without waiting them."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.seconds = start

    def __call__(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


@pytest.fixture(scope="session", autouse=True)
def own_lnn_home(tmp_path_factory):
    """The registry of `lnn up` stacks (LNN_HOME) of this test session, not the user's, nor another session's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LNN_HOME", str(tmp_path_factory.mktemp("lnn-home")))
        yield


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """One fresh moto server with LnnStack deployed by cdk, shared by the module, the AWS SDKs pointed at it:
    (the emulator, the stack's outputs). For the end-to-end tests (integration/test_cli_server, browser/test_serve)."""
    from tests.support.emulator import deployed_stack

    with deployed_stack(tmp_path_factory.mktemp("emulator")) as deployed:
        yield deployed


@pytest.fixture
def aws(monkeypatch):
    """A fresh in-process AWS with the stack's bucket, table and topic, and the functions' environment set."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "LNN_BUCKET": "lnn-test-bucket",
        "LNN_TABLE": "lnn-results",
        "LNN_TRAINER_FUNCTION": "lnn-trainer",
        "AWS_LAMBDA_FUNCTION_NAME": "lnn-trainer",
        "LNN_TRAINING_DEFAULTS": "{}",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        session = session_sharing_models()
        session.client("s3").create_bucket(Bucket="lnn-test-bucket")
        session.client("dynamodb").create_table(
            TableName="lnn-results",
            KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}, {"AttributeName": "epoch", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "run_id", "AttributeType": "S"},
                {"AttributeName": "epoch", "AttributeType": "N"},
                {"AttributeName": "status", "AttributeType": "S"},
                {"AttributeName": MESSAGE_DUE, "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            GlobalSecondaryIndexes=[
                {
                    "IndexName": index,
                    "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
                for index, key in ((RUNS_BY_STATUS_INDEX, "status"), (RUNS_AWAITING_MESSAGE_INDEX, MESSAGE_DUE))
            ],
        )
        sns = session.client("sns")
        topic_arn = sns.create_topic(Name="lnn-notifications")["TopicArn"]
        monkeypatch.setenv("LNN_TOPIC_ARN", topic_arn)
        sqs = session.client("sqs")
        queue_url = sqs.create_queue(QueueName="lnn-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        yield AwsWorld(session, topic_arn, queue_url)


class AwsWorld:
    def __init__(self, session, topic_arn, inbox_url):
        self.session, self.topic_arn, self.inbox_url = session, topic_arn, inbox_url
        self.s3 = session.client("s3")
        self.bucket = "lnn-test-bucket"

    def upload_data(self, key, **arrays):
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=npz_bytes(**arrays))

    def messages(self):
        """Every SNS message delivered so far (through the SQS subscription)."""
        sqs = self.session.client("sqs")
        received = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=self.inbox_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                return received
            received += batch
            for message in batch:
                sqs.delete_message(QueueUrl=self.inbox_url, ReceiptHandle=message["ReceiptHandle"])


def blobs(m=60, features=4, seed=0):
    """Two separable Gaussian blobs: X (m, features), y (m,) of 0/1."""
    rng = np.random.RandomState(seed)
    y = np.arange(m) % 2
    X = rng.randn(m, features) * 0.5 + (y[:, None] * 2.0 - 1.0)
    return X, y.astype(np.float64)
