"""`FunctionFactory`: what every LNN function shares (runtime, code, NumPy layer) and gets (a log group, a role)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from lnn_stack.nag import acknowledge
from lnn_stack.numpy_layer import NumpyLayer

RUNTIME = lambda_.Runtime.PYTHON_3_14  # the newest Python that aws-cdk-lib 2.275 offers
LAMBDA_SOURCE = Path(__file__).resolve().parent.parent / "lambda_src"
POWERTOOLS_ENVIRONMENT = {"POWERTOOLS_SERVICE_NAME": "lnn", "POWERTOOLS_METRICS_NAMESPACE": "LNN"}


class FunctionFactory:
    """Creates the functions under `scope`, with the code asset (lambda_src) and the NumpyLayer they share.

    Each function gets its own log group (`<id>Logs`) and its own role (`<id>Role`), whose only grant here is
    writing to that log group; the function's component adds the rest. Every function keeps cdk-nag's
    Serverless-LambdaTracing finding, acknowledged here.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        architecture: lambda_.Architecture,
        log_retention: logs.RetentionDays,
        code: lambda_.Code | None,
    ) -> None:
        self._scope = scope
        self._architecture = architecture
        self._log_retention = log_retention
        self._code = code or lambda_.Code.from_asset(str(LAMBDA_SOURCE), exclude=["**/__pycache__"])
        self.layer = NumpyLayer(scope, "NumpyLayer", runtime=RUNTIME, architecture=architecture)

    def create(
        self, construct_id: str, *, name: str, environment: Mapping[str, str], **function_props: Any
    ) -> lambda_.Function:
        """The function `construct_id` (`name` is how cdk-nag reasons call it) with its log group and role."""
        log_group = logs.LogGroup(
            self._scope, f"{construct_id}Logs", retention=self._log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        role = iam.Role(self._scope, f"{construct_id}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            )
        )
        function = lambda_.Function(
            self._scope,
            construct_id,
            runtime=RUNTIME,
            architecture=self._architecture,
            code=self._code,
            layers=[self.layer.layer_version],
            environment={**POWERTOOLS_ENVIRONMENT, **environment},
            log_group=log_group,
            role=role,
            **function_props,
        )
        acknowledge(
            function.node.default_child,
            "Serverless::Serverless-LambdaTracing",
            f"Active X-Ray tracing on the {name} would need xray:PutTraceSegments and xray:PutTelemetryRecords "
            "on Resource '*' (X-Ray has no resource-level permissions), which this least-privilege role does "
            "not grant; Powertools logs and the run's DynamoDB items already trace each step.",
        )
        return function


def acknowledge_async_failures(function: lambda_.Function, *, name: str, failure_target: str) -> None:
    """Serverless-LambdaDLQ on a function whose async invoke config sends failed events to `failure_target`."""
    acknowledge(
        function.node.default_child,
        "Serverless::Serverless-LambdaDLQ",
        "A DeadLetterConfig only catches failed asynchronous invocations, and for those the "
        f"{name}'s async invoke config already sends the event that failed every attempt to "
        f"{failure_target}; a DLQ as well would deliver each failure a second time.",
    )
