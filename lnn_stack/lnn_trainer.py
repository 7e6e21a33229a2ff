"""`LnnTrainer`: the reusable L3 construct that trains a NumPy network with self-invoking Lambda functions.

Like the AWS Solutions Constructs, it takes an existing bucket, table or topic (`existing_*_obj`) or creates
its own from secure defaults, overridable with `*_props` (keyword arguments of the L2 construct).
Handler strings, environment variables and IAM statements follow docs/architecture.md.
"""

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration, Names
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from lnn_core.launch.launcher import (
    DEFAULT_MAX_RUNNING_RUNS,
    DEFAULT_TRAINER_RESERVED_CONCURRENCY,
)
from lnn_stack.dead_letter_queue import DeadLetterQueue
from lnn_stack.functions import FunctionFactory
from lnn_stack.launch_function import LaunchFunction
from lnn_stack.observability import Observability
from lnn_stack.predict_function import PREDICT_MEMORY_MB, PredictFunction
from lnn_stack.settings.deployment import LAUNCHER_RESERVED_CONCURRENCY
from lnn_stack.settings.training import TrainingDefaults
from lnn_stack.storage import RunStorage
from lnn_stack.trainer_function import TrainerFunction
from lnn_stack.triggers import Triggers
from lnn_stack.watchdog_function import WATCHDOG_SUFFIX, WatchdogFunction


class LnnTrainer(Construct):
    """The trainer, launcher and watchdog functions, their NumPy layer, and the bucket, table and topic they share.

    Attributes: `bucket`, `table`, `topic`, `layer`, `trainer_function`, `launch_function`,
    `watchdog_function`, `predict_function` (None with `predict=False`), `predict_url` (a Function URL with
    AWS_IAM auth, only with `predict_url=True`), `launch_rule`, `watchdog_rule`, `dead_letter_queue`,
    `invocations_alarm`, `dead_letter_alarm`, `dashboard`.

    Its components (one module each: storage, functions, dead_letter_queue, trainer_function, launch_function,
    watchdog_function, predict_function, triggers, observability) create their resources directly under this
    construct, so construct paths and logical ids are those of one flat construct. They are created in the order
    the template lists the resources.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        training_defaults: TrainingDefaults = TrainingDefaults(),
        architecture: lambda_.Architecture = lambda_.Architecture.ARM_64,
        memory_size: int = 1024,
        timeout: Duration = Duration.minutes(5),
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_WEEK,
        reserved_concurrency: int | None = DEFAULT_TRAINER_RESERVED_CONCURRENCY,
        launcher_reserved_concurrency: int | None = LAUNCHER_RESERVED_CONCURRENCY,
        max_running_runs: int = DEFAULT_MAX_RUNNING_RUNS,
        stall_after: Duration = Duration.minutes(15),
        watchdog_rate: Duration = Duration.minutes(5),
        invocation_alarm_threshold: int = 5000,
        notification_email: str | None = None,
        predict: bool = True,
        predict_url: bool = False,
        predict_memory_size: int = PREDICT_MEMORY_MB,
        code: lambda_.Code | None = None,
        existing_bucket_obj: s3.IBucket | None = None,
        bucket_props: Mapping[str, Any] | None = None,
        existing_table_obj: dynamodb.ITable | None = None,
        table_props: Mapping[str, Any] | None = None,
        existing_topic_obj: sns.ITopic | None = None,
        topic_props: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        pairs = [
            (existing_bucket_obj, bucket_props),
            (existing_table_obj, table_props),
            (existing_topic_obj, topic_props),
        ]
        if any(existing and props for existing, props in pairs):
            raise ValueError("LnnTrainer: give an existing resource or props to create one, not both")
        if predict_url and not predict:
            raise ValueError("LnnTrainer: predict_url needs the PredictLambda (predict=True)")

        storage = RunStorage(
            self,
            existing_bucket_obj=existing_bucket_obj,
            bucket_props=bucket_props,
            existing_table_obj=existing_table_obj,
            table_props=table_props,
            existing_topic_obj=existing_topic_obj,
            topic_props=topic_props,
        )
        self.bucket, self.table, self.topic = storage.bucket, storage.table, storage.topic
        functions = FunctionFactory(self, architecture=architecture, log_retention=log_retention, code=code)
        self.layer = functions.layer
        self.dead_letter_queue = DeadLetterQueue(self, topic=self.topic, notification_email=notification_email).queue

        # A name fixed at synth time: the trainer invokes the watchdog, which refers to the trainer.
        watchdog_name = Names.unique_resource_name(self, max_length=64 - len(WATCHDOG_SUFFIX)) + WATCHDOG_SUFFIX
        trainer = TrainerFunction(
            functions,
            storage=storage,
            memory_size=memory_size,
            timeout=timeout,
            reserved_concurrency=reserved_concurrency,
            watchdog_name=watchdog_name,
        )
        self.trainer_function = trainer.function
        self.launch_function = LaunchFunction(
            functions,
            storage=storage,
            trainer=trainer,
            training_defaults=training_defaults,
            max_running_runs=max_running_runs,
            reserved_concurrency=launcher_reserved_concurrency,
        ).function
        self.watchdog_function = WatchdogFunction(
            functions,
            storage=storage,
            trainer=trainer,
            stall_after=stall_after,
            dead_letter_queue=self.dead_letter_queue,
            function_name=watchdog_name,
            launcher=self.launch_function,
            max_running_runs=max_running_runs,
        ).function
        self.predict_function: lambda_.Function | None = None
        self.predict_url: lambda_.FunctionUrl | None = None
        if predict:
            predictor = PredictFunction(functions, storage=storage, memory_size=predict_memory_size, url=predict_url)
            self.predict_function, self.predict_url = predictor.function, predictor.url

        triggers = Triggers(
            self,
            trainer=trainer,
            launch_function=self.launch_function,
            watchdog_function=self.watchdog_function,
            bucket=self.bucket,
            dead_letter_queue=self.dead_letter_queue,
            watchdog_rate=watchdog_rate,
        )
        self.launch_rule, self.watchdog_rule = triggers.launch_rule, triggers.watchdog_rule
        observability = Observability(
            self,
            topic=self.topic,
            trainer_function=self.trainer_function,
            predict_function=self.predict_function,
            dead_letter_queue=self.dead_letter_queue,
            invocation_alarm_threshold=invocation_alarm_threshold,
        )
        self.invocations_alarm = observability.invocations_alarm
        self.dead_letter_alarm = observability.dead_letter_alarm
        self.dashboard = observability.dashboard
