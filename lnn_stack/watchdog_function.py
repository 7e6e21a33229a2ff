"""`WatchdogFunction`: the WatchdogLambda, which resumes runs that made no progress for a while and drives sweeps."""

import jsii
from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from lnn_stack.functions import FunctionFactory, acknowledge_async_failures
from lnn_stack.storage import RunStorage
from lnn_stack.trainer_function import TRAINER_MAX_EVENT_AGE, TrainerFunction

WATCHDOG_MEMORY_MB = 256
WATCHDOG_TIMEOUT = Duration.minutes(1)
WATCHDOG_SUFFIX = "-watchdog"  # of its function's name, fixed at synth time (lnn_trainer.py)


class WatchdogFunction:
    """The WatchdogLambda (`function`); its schedule is in triggers.py.

    Grants: Query on the runs-by-status index (it looks for stalled runs among the running ones) and on the
    runs-awaiting-message index (ended runs whose message is owed), Get/UpdateItem on the table, the copy of a
    staged model to its published key, sns:Publish on the topic, lambda:InvokeFunction on the trainer and the
    launcher, sqs:SendMessage on the dead-letter queue, its on-failure destination, and what driving a sweep needs
    of the bucket (`RunStorage.grant_drive_sweeps`).
    """

    def __init__(
        self,
        functions: FunctionFactory,
        *,
        storage: RunStorage,
        trainer: TrainerFunction,
        stall_after: Duration,
        dead_letter_queue: sqs.IQueue,
        function_name: str,
        launcher: lambda_.IFunction,
        max_running_runs: int,
    ) -> None:
        self.function = functions.create(
            "WatchdogLambda",
            name="watchdog",
            function_name=function_name,  # the trainer's kick names it (trainer_function.py)
            handler="lnn_core.handlers.watchdog",
            description="LNN watchdog: resumes runs that made no progress for LNN_STALL_SECONDS",
            environment={
                "LNN_STALL_SECONDS": str(int(stall_after.to_seconds())),
                # For its stall judgement: how long a step may run, and how long Lambda may hold a step's event.
                "LNN_TRAINER_TIMEOUT_SECONDS": str(int(trainer.timeout.to_seconds())),
                "LNN_EVENT_AGE_SECONDS": str(int(TRAINER_MAX_EVENT_AGE.to_seconds())),
                "LNN_BUCKET": storage.bucket.bucket_name,  # it publishes the model of a run owed its message
                **trainer.invoker_environment,
                # it drives sweeps: it starts a queued trial by invoking the launcher, within the stack's capacity
                "LNN_LAUNCH_FUNCTION": launcher.function_name,
                **trainer.capacity_environment(max_running_runs),
            },
            memory_size=WATCHDOG_MEMORY_MB,
            timeout=WATCHDOG_TIMEOUT,
            retry_attempts=0,  # the next scheduled run is the retry
            # A failed watchdog run lands in the DLQ, whose alarm notifies the topic once, not every 5 minutes.
            on_failure=_SendOnlyQueueDestination(dead_letter_queue),
        )
        acknowledge_async_failures(
            self.function, name="watchdog", failure_target="the dead-letter queue, whose alarm notifies the topic"
        )
        storage.grant_query_running_runs(self.function)
        storage.grant_query_messages_owed(self.function)
        storage.grant_items(self.function, "dynamodb:GetItem", "dynamodb:UpdateItem")
        storage.grant_publish_models(self.function)
        storage.grant_list_runs(self.function)  # a staged model already published and removed: 404, not 403
        storage.grant_publish(self.function)
        trainer.grant_invoke(self.function)
        storage.grant_drive_sweeps(self.function)
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[launcher.function_arn])
        )


@jsii.implements(lambda_.IDestination)
class _SendOnlyQueueDestination:
    """An on-failure destination on an SQS queue, granting the function only sqs:SendMessage on it (CDK's
    `SqsDestination` adds sqs:GetQueueAttributes and sqs:GetQueueUrl, which Lambda does not need to deliver)."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self._queue = queue

    def bind(self, _scope: Construct, fn: lambda_.IFunction, *, type=None) -> lambda_.DestinationConfig:
        fn.add_to_role_policy(iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self._queue.queue_arn]))
        return lambda_.DestinationConfig(destination=self._queue.queue_arn)
