"""`LnnStack`: one `LnnTrainer`, configured from the validated context settings, and the outputs `lnn` reads."""

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from lnn_stack.lnn_trainer import LnnTrainer
from lnn_stack.settings.deployment import DeploymentSettings
from lnn_stack.settings.training import TrainingDefaults

# Provisioned capacity when billing_mode=provisioned: the seed's 5 read and 5 write units.
PROVISIONED_CAPACITY_UNITS = 5


class LnnStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deployment: DeploymentSettings,
        training: TrainingDefaults,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.deployment, self.training = deployment, training
        table_props: dict[str, Any] = {
            "billing_mode": deployment.table_billing_mode,
            "removal_policy": deployment.data_removal_policy,
        }
        if deployment.billing_mode == "provisioned":
            table_props.update(read_capacity=PROVISIONED_CAPACITY_UNITS, write_capacity=PROVISIONED_CAPACITY_UNITS)
        self.trainer = LnnTrainer(
            self,
            "LnnTrainer",
            training_defaults=training,
            architecture=deployment.lambda_architecture,
            memory_size=deployment.memory_size,
            timeout=deployment.timeout,
            log_retention=deployment.log_retention,
            reserved_concurrency=deployment.reserved_concurrency,
            launcher_reserved_concurrency=deployment.launcher_reserved_concurrency,
            max_running_runs=deployment.max_running_runs,
            stall_after=deployment.stall_after,
            watchdog_rate=deployment.watchdog_rate,
            invocation_alarm_threshold=deployment.invocation_alarm_threshold,
            notification_email=deployment.notification_email,
            predict_url=deployment.predict_url,
            bucket_props={"removal_policy": deployment.data_removal_policy},
            table_props=table_props,
        )
        # Output names are the contract the `lnn` command reads (docs/architecture.md).
        outputs = {
            "BucketName": self.trainer.bucket.bucket_name,
            "TableName": self.trainer.table.table_name,
            "TopicArn": self.trainer.topic.topic_arn,
            "TrainerFunctionName": self.trainer.trainer_function.function_name,
            "LaunchFunctionName": self.trainer.launch_function.function_name,
            "WatchdogFunctionName": self.trainer.watchdog_function.function_name,
            "DashboardName": self.trainer.dashboard.dashboard_name,
        }
        if self.trainer.predict_function is not None:
            outputs["PredictFunctionName"] = self.trainer.predict_function.function_name
        if self.trainer.predict_url is not None:
            outputs["PredictFunctionUrl"] = self.trainer.predict_url.url
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
