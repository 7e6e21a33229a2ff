"""`DeadLetterQueue`: where what could not be delivered waits, and the operators' e-mail subscription."""

from aws_cdk import Duration
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from lnn_stack.nag import acknowledge

DLQ_RETENTION = Duration.days(14)  # SQS's longest


class DeadLetterQueue:
    """The queue (`queue`, id DeadLetterQueue under `scope`) for the events EventBridge could not deliver to the
    launcher or the watchdog, the watchdog's failed runs, and the messages SNS could not deliver to
    `notification_email`, which it subscribes to the topic.

    Its queue policy denies requests without TLS and allows sqs:SendMessage only to the senders, each for its own
    source ARN: SNS for the topic (added by the e-mail subscription) and EventBridge for each rule (triggers.py).
    """

    def __init__(self, scope: Construct, *, topic: sns.ITopic, notification_email: str | None) -> None:
        self.queue = sqs.Queue(
            scope,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )
        for rule in ("AwsSolutions::AwsSolutions-SQS3", "Serverless::Serverless-SQSRedrivePolicy"):
            acknowledge(
                self.queue,
                rule,
                "This queue is itself the dead-letter queue of the launcher's and the watchdog's EventBridge "
                "targets and the watchdog's on-failure destination (cdk-nag only recognizes an SQS redrive); "
                "nothing consumes it, so a redrive to a further queue would never fire.",
            )
        if notification_email:
            # A message SNS cannot deliver to the address (after its retries) waits in the DLQ too.
            topic.add_subscription(subscriptions.EmailSubscription(notification_email, dead_letter_queue=self.queue))
