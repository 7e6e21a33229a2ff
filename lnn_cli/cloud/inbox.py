"""An SQS queue subscribed to the stack's SNS topic, so that a local run's messages can be read back."""

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3


@dataclass
class NotificationInbox:
    """An SQS queue subscribed to the stack's topic, so that the run's SNS messages can be read back."""

    session: boto3.Session
    topic_arn: str
    queue_url: str = ""
    subscription_arn: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self):
        sqs = self.session.client("sqs")
        self.queue_url = sqs.create_queue(QueueName=f"lnn-local-inbox-{uuid.uuid4().hex[:12]}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.subscription_arn = self.session.client("sns").subscribe(
            TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn, ReturnSubscriptionArn=True
        )["SubscriptionArn"]

    def read(self) -> list[dict[str, Any]]:
        """Every message received so far: subject, body (parsed JSON when it is JSON) and attributes."""
        sqs = self.session.client("sqs")
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return self.received
            for message in batch:
                envelope = json.loads(message["Body"])
                try:
                    body = json.loads(envelope["Message"])
                except json.JSONDecodeError:
                    body = envelope["Message"]
                attributes = {name: value["Value"] for name, value in (envelope.get("MessageAttributes") or {}).items()}
                self.received.append({"subject": envelope.get("Subject"), "body": body, "attributes": attributes})
            sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(batch)],
            )

    def close(self) -> None:
        self.session.client("sns").unsubscribe(SubscriptionArn=self.subscription_arn)
        self.session.client("sqs").delete_queue(QueueUrl=self.queue_url)
