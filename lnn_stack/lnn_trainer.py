"""`LnnTrainer`: the reusable L3 construct that trains a NumPy network with self-invoking Lambda functions.

Like the AWS Solutions Constructs, it takes an existing bucket, table or topic (`existing_*_obj`) or creates
its own from secure defaults, overridable with `*_props` (keyword arguments of the L2 construct).
Handler strings, environment variables and IAM statements follow docs/architecture.md.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from lnn_core.ports import RUNS_BY_STATUS_INDEX

from .numpy_layer import NumpyLayer
from .settings import TrainingDefaults

RUNTIME = lambda_.Runtime.PYTHON_3_14  # the newest Python that aws-cdk-lib 2.275 offers
LAMBDA_SOURCE = Path(__file__).resolve().parent.parent / "lambda_src"
RUNS_PREFIX = "runs/"
# The engine tags the scratch objects it writes under runs/<run_id>/state/ with this tag (PutObject
# Tagging); a lifecycle filter cannot match the run id in the middle of a key, but it can match a tag.
SCRATCH_TAG_KEY = "lnn-scratch"
SCRATCH_TAG_VALUE = "true"
SCRATCH_EXPIRY = Duration.days(7)  # long enough to `lnn resume` a stalled run from its scratch
POWERTOOLS_ENVIRONMENT = {"POWERTOOLS_SERVICE_NAME": "lnn", "POWERTOOLS_METRICS_NAMESPACE": "LNN"}
# Every step is idempotent (exactly once in effect, keyed by run and step), so Lambda's retries are safe
# and they ride out transient errors; 2 is Lambda's maximum. An event that still fails reaches the topic.
TRAINER_RETRY_ATTEMPTS = 2
# Lambda keeps retrying a throttled event (e.g. at the reserved concurrency) this long; the longest allowed,
# since a late duplicate is harmless and the watchdog resumes a stalled run well before it expires.
TRAINER_MAX_EVENT_AGE = Duration.hours(6)
WATCHDOG_MEMORY_MB = 256
WATCHDOG_TIMEOUT = Duration.minutes(1)
ALARM_PERIOD = Duration.minutes(5)


class LnnTrainer(Construct):
    """The trainer, launcher and watchdog functions, their NumPy layer, and the bucket, table and topic they share.

    Attributes: `bucket`, `table`, `topic`, `layer`, `trainer_function`, `launch_function`,
    `watchdog_function`, `launch_rule`, `watchdog_rule`, `invocations_alarm`.
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
        reserved_concurrency: int | None = None,
        stall_after: Duration = Duration.minutes(15),
        watchdog_rate: Duration = Duration.minutes(5),
        invocation_alarm_threshold: int = 5000,
        notification_email: str | None = None,
        code: lambda_.Code | None = None,
        existing_bucket_obj: s3.IBucket | None = None,
        bucket_props: Mapping[str, Any] | None = None,
        existing_table_obj: dynamodb.ITable | None = None,
        table_props: Mapping[str, Any] | None = None,
        existing_topic_obj: sns.ITopic | None = None,
        topic_props: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        pairs = [(existing_bucket_obj, bucket_props), (existing_table_obj, table_props), (existing_topic_obj, topic_props)]
        if any(existing and props for existing, props in pairs):
            raise ValueError("LnnTrainer: give an existing resource or props to create one, not both")
        self._architecture = architecture
        self._log_retention = log_retention
        self._code = code or lambda_.Code.from_asset(str(LAMBDA_SOURCE), exclude=["**/__pycache__"])

        self.bucket = existing_bucket_obj or self._create_bucket(bucket_props)
        self._send_bucket_events_to_eventbridge()
        self.table = existing_table_obj or self._create_table(table_props)
        self.topic = existing_topic_obj or sns.Topic(self, "Topic", **{"enforce_ssl": True, **(topic_props or {})})
        if notification_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(notification_email))
        self.layer = NumpyLayer(self, "NumpyLayer", runtime=RUNTIME, architecture=architecture)

        shared_environment = {"LNN_TABLE": self.table.table_name, "LNN_TOPIC_ARN": self.topic.topic_arn}
        self.trainer_function = self._function(
            "TrainerLambda",
            handler="lnn_core.handlers.train",
            description="LNN trainer: one training step per invocation, then invokes itself for the next",
            environment={"LNN_BUCKET": self.bucket.bucket_name, **shared_environment},
            memory_size=memory_size,
            timeout=timeout,
            reserved_concurrent_executions=reserved_concurrency,
            # Without ALLOW, Lambda stops a chain of self-invocations after about 16 hops (epoch 2).
            recursive_loop=lambda_.RecursiveLoop.ALLOW,
            retry_attempts=TRAINER_RETRY_ATTEMPTS,
            max_event_age=TRAINER_MAX_EVENT_AGE,
            on_failure=destinations.SnsDestination(self.topic),
        )
        trainer_environment = {"LNN_TRAINER_FUNCTION": self.trainer_function.function_name, **shared_environment}
        self.launch_function = self._function(
            "LaunchLambda",
            handler="lnn_core.handlers.launch",
            description="LNN launcher: validates a run's parameters and data, then starts the trainer",
            environment={
                "LNN_BUCKET": self.bucket.bucket_name,
                "LNN_TRAINING_DEFAULTS": training_defaults.to_json(),
                **trainer_environment,
            },
            memory_size=memory_size,  # it loads the training data to validate it, as the trainer does
            timeout=timeout,
            # A launch that fails (bad parameters.json) is otherwise visible only in the logs.
            on_failure=destinations.SnsDestination(self.topic),
        )
        self.watchdog_function = self._function(
            "WatchdogLambda",
            handler="lnn_core.handlers.watchdog",
            description="LNN watchdog: resumes runs that made no progress for LNN_STALL_SECONDS",
            environment={"LNN_STALL_SECONDS": str(int(stall_after.to_seconds())), **trainer_environment},
            memory_size=WATCHDOG_MEMORY_MB,
            timeout=WATCHDOG_TIMEOUT,
            retry_attempts=0,  # the next scheduled run is the retry
        )
        self._grant_least_privilege()

        self.launch_rule = events.Rule(
            self,
            "LaunchOnParametersUpload",
            description="Starts a run when runs/<run_id>/parameters.json is uploaded",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [self.bucket.bucket_name]},
                    "object": {"key": [{"wildcard": f"{RUNS_PREFIX}*/parameters.json"}]},
                },
            ),
            targets=[targets.LambdaFunction(self.launch_function)],
        )
        self.watchdog_rule = events.Rule(
            self,
            "WatchdogSchedule",
            description="Runs the LNN watchdog, which resumes stalled runs",
            schedule=events.Schedule.rate(watchdog_rate),
            targets=[targets.LambdaFunction(self.watchdog_function)],
        )
        self.invocations_alarm = cloudwatch.Alarm(
            self,
            "TrainerInvocationsAlarm",
            alarm_description=(
                "LNN guard rail: the trainer was invoked more often than expected, e.g. a run whose chain duplicates"
            ),
            metric=self.trainer_function.metric_invocations(period=ALARM_PERIOD, statistic="Sum"),
            threshold=invocation_alarm_threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.invocations_alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))

    def _create_bucket(self, bucket_props: Mapping[str, Any] | None) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "Bucket",
            **{
                "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
                "enforce_ssl": True,
                "encryption": s3.BucketEncryption.S3_MANAGED,
                # Keep data and models on `cdk destroy`. (DESTROY deletes only an empty bucket: emptying it
                # needs auto_delete_objects, a custom resource, which this app does not use.)
                "removal_policy": RemovalPolicy.RETAIN,
                "lifecycle_rules": [
                    s3.LifecycleRule(
                        id="ExpireRunScratch",
                        tag_filters={SCRATCH_TAG_KEY: SCRATCH_TAG_VALUE},
                        expiration=SCRATCH_EXPIRY,
                    ),
                    # S3 does not allow this action in a rule that filters on tags, hence a rule of its own.
                    s3.LifecycleRule(
                        id="AbortIncompleteUploads",
                        prefix=RUNS_PREFIX,
                        abort_incomplete_multipart_upload_after=Duration.days(1),
                    ),
                ],
                **(bucket_props or {}),
            },
        )
        Validations.of(bucket).acknowledge(Acknowledgment(
            id="AwsSolutions::AwsSolutions-S1",
            reason="Server access logs would need a second bucket that `cdk destroy` cannot empty without a custom "
            "resource; the run record in DynamoDB and the function logs already say who trained what and when.",
        ))
        return bucket

    def _send_bucket_events_to_eventbridge(self) -> None:
        """Set the L1 property: CDK's `event_bridge_enabled` and S3 notifications both add a custom resource."""
        cfn_bucket = self.bucket.node.default_child
        if isinstance(cfn_bucket, s3.CfnBucket):
            cfn_bucket.add_property_override("NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True)
        # An imported bucket must already send its events to EventBridge (a bucket setting).

    def _create_table(self, table_props: Mapping[str, Any] | None) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            "Table",
            **{
                # run_id + epoch (not the seed's epoch alone) so that many runs share one table.
                "partition_key": dynamodb.Attribute(name="run_id", type=dynamodb.AttributeType.STRING),
                "sort_key": dynamodb.Attribute(name="epoch", type=dynamodb.AttributeType.NUMBER),
                "billing_mode": dynamodb.BillingMode.PAY_PER_REQUEST,
                "point_in_time_recovery_specification": dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                "removal_policy": RemovalPolicy.RETAIN,
                **(table_props or {}),
            },
        )
        # Only run records carry `status`: the watchdog queries running runs instead of scanning epoch items.
        table.add_global_secondary_index(
            index_name=RUNS_BY_STATUS_INDEX,
            partition_key=dynamodb.Attribute(name="status", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        return table

    def _function(self, construct_id: str, *, environment: Mapping[str, str], **function_props: Any) -> lambda_.Function:
        """A function with its own log group, and its own role that may write only to that log group."""
        log_group = logs.LogGroup(
            self, f"{construct_id}Logs", retention=self._log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        role = iam.Role(self, f"{construct_id}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        role.add_to_policy(
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn])
        )
        return lambda_.Function(
            self,
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

    def _grant_least_privilege(self) -> None:
        """The statements of docs/architecture.md: item and object actions on these resources only, no wildcard actions."""
        run_objects = self.bucket.arn_for_objects(f"{RUNS_PREFIX}*")
        table_arn = self.table.table_arn
        publish = iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn])
        invoke_trainer = iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.trainer_function.function_arn])
        # Without it S3 answers 403 instead of 404 for a missing key, and the engine could not tell "not written
        # yet" (HeadObject) or "no such data" from a permission error. It reveals key names only.
        list_bucket = iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn])
        statements = {
            self.trainer_function: [
                # PutObjectTagging: the engine tags its scratch objects in the PutObject call.
                iam.PolicyStatement(
                    actions=["s3:GetObject", "s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObject"],
                    resources=[run_objects],
                ),
                list_bucket,
                iam.PolicyStatement(
                    actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"],
                    resources=[table_arn],
                ),
                publish,
            ],
            self.launch_function: [
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[run_objects]),
                list_bucket,
                iam.PolicyStatement(
                    actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], resources=[table_arn]
                ),
                publish,
                invoke_trainer,
            ],
            self.watchdog_function: [
                iam.PolicyStatement(actions=["dynamodb:Query"], resources=[f"{table_arn}/index/{RUNS_BY_STATUS_INDEX}"]),
                iam.PolicyStatement(actions=["dynamodb:GetItem", "dynamodb:UpdateItem"], resources=[table_arn]),
                publish,
                invoke_trainer,
            ],
        }
        for function, function_statements in statements.items():
            for statement in function_statements:
                function.add_to_role_policy(statement)
        # Self-invocation through the role's default policy would make the function depend on a policy that
        # depends on the function: a cycle. A separate policy breaks it.
        iam.Policy(self, "TrainerSelfInvokePolicy", roles=[self.trainer_function.role], statements=[invoke_trainer])

        for function in (self.trainer_function, self.launch_function):
            Validations.of(function.role.node.find_child("DefaultPolicy")).acknowledge(Acknowledgment(
                id=f"AwsSolutions::AwsSolutions-IAM5[Resource::{self._nag_resource(run_objects)}]",
                reason=f"Object actions are scoped to the {RUNS_PREFIX} prefix of this stack's bucket, where each "
                "run's keys are created at run time (runs/<run_id>/...); no other prefix or bucket is reachable.",
            ))

    def _nag_resource(self, arn: str) -> str:
        """An ARN as cdk-nag names it in a finding: a Ref becomes <Name>, a GetAtt <LogicalId.Attribute>."""

        def name(part: Any) -> str:
            if isinstance(part, str):
                return part
            if "Ref" in part:
                return f"<{part['Ref']}>"
            return "<{}.{}>".format(*part["Fn::GetAtt"])

        resolved = Stack.of(self).resolve(arn)
        parts = resolved["Fn::Join"][1] if isinstance(resolved, dict) and "Fn::Join" in resolved else [resolved]
        return "".join(map(name, parts))
