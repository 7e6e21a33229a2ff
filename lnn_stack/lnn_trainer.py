"""`LnnTrainer`: the reusable L3 construct that trains a NumPy network with self-invoking Lambda functions.

Like the AWS Solutions Constructs, it takes an existing bucket, table or topic (`existing_*_obj`) or creates
its own from secure defaults, overridable with `*_props` (keyword arguments of the L2 construct).
Handler strings, environment variables and IAM statements follow docs/architecture.md.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsii

from aws_cdk import Acknowledgment, ArnFormat, Duration, RemovalPolicy, Stack, Validations
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
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from lnn_core.ports import RUNS_BY_STATUS_INDEX

from .numpy_layer import NumpyLayer
from .settings import LAUNCHER_RESERVED_CONCURRENCY, TrainingDefaults

RUNTIME = lambda_.Runtime.PYTHON_3_14  # the newest Python that aws-cdk-lib 2.275 offers
LAMBDA_SOURCE = Path(__file__).resolve().parent.parent / "lambda_src"
RUNS_PREFIX = "runs/"
# The engine tags the scratch objects it writes under runs/<run_id>/state/ with this tag (PutObject
# Tagging); a lifecycle filter cannot match the run id in the middle of a key, but it can match a tag.
SCRATCH_TAG_KEY = "lnn-scratch"
SCRATCH_TAG_VALUE = "true"
SCRATCH_EXPIRY = Duration.days(7)  # long enough to `lnn resume` a stalled run from its scratch
# The bucket is versioned, so that an overwritten or deleted data.npz, parameters.json or model.npz can be
# restored. The scratch churns (written and deleted every epoch), so its old versions go after a day; every
# other object's old versions after a week, time enough to notice a loss.
SCRATCH_NONCURRENT_EXPIRY = Duration.days(1)
NONCURRENT_EXPIRY = Duration.days(7)
# The trainer writes only its scratch and the model; data.npz and parameters.json are the user's.
SCRATCH_OBJECTS = f"{RUNS_PREFIX}*/state/*"
MODEL_OBJECTS = f"{RUNS_PREFIX}*/model.npz"
POWERTOOLS_ENVIRONMENT = {"POWERTOOLS_SERVICE_NAME": "lnn", "POWERTOOLS_METRICS_NAMESPACE": "LNN"}
# Every step is idempotent (exactly once in effect, keyed by run and step), so Lambda's retries are safe
# and they ride out transient errors; 2 is Lambda's maximum. An event that still fails reaches the topic.
TRAINER_RETRY_ATTEMPTS = 2
# Lambda keeps retrying a throttled event (e.g. at the reserved concurrency) this long; the longest allowed,
# since a late duplicate is harmless and the watchdog resumes a stalled run well before it expires.
TRAINER_MAX_EVENT_AGE = Duration.hours(6)
# Cost cap: at most this many trainer steps at once (each running run uses about one; the default
# max_running_runs of 10 leaves room for retries, duplicates and resumes). AWS keeps at least 100 of the
# account's concurrency unreserved, so the account quota must be at least 100 plus every reservation.
DEFAULT_TRAINER_RESERVED_CONCURRENCY = 20
DEFAULT_MAX_RUNNING_RUNS = 10
# EventBridge's delivery to the launcher and the watchdog: retried this often and this long, then the DLQ.
RULE_RETRY_ATTEMPTS = 4
RULE_MAX_EVENT_AGE = Duration.hours(2)
DLQ_RETENTION = Duration.days(14)  # SQS's longest
WATCHDOG_MEMORY_MB = 256
WATCHDOG_TIMEOUT = Duration.minutes(1)
ALARM_PERIOD = Duration.minutes(5)
# The PredictLambda answers one synchronous request (at most 6 MB of rows) from a model cached in its container.
PREDICT_MEMORY_MB = 1024
PREDICT_TIMEOUT = Duration.seconds(30)
DASHBOARD_PERIOD = Duration.minutes(5)


class LnnTrainer(Construct):
    """The trainer, launcher and watchdog functions, their NumPy layer, and the bucket, table and topic they share.

    Attributes: `bucket`, `table`, `topic`, `layer`, `trainer_function`, `launch_function`,
    `watchdog_function`, `predict_function` (None with `predict=False`), `predict_url` (a Function URL with
    AWS_IAM auth, only with `predict_url=True`), `launch_rule`, `watchdog_rule`, `dead_letter_queue`,
    `invocations_alarm`, `dead_letter_alarm`, `dashboard`.
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
        pairs = [(existing_bucket_obj, bucket_props), (existing_table_obj, table_props), (existing_topic_obj, topic_props)]
        if any(existing and props for existing, props in pairs):
            raise ValueError("LnnTrainer: give an existing resource or props to create one, not both")
        if predict_url and not predict:
            raise ValueError("LnnTrainer: predict_url needs the PredictLambda (predict=True)")
        self._architecture = architecture
        self._log_retention = log_retention
        self._code = code or lambda_.Code.from_asset(str(LAMBDA_SOURCE), exclude=["**/__pycache__"])

        self.bucket = existing_bucket_obj or self._create_bucket(bucket_props)
        self._send_bucket_events_to_eventbridge()
        self.table = existing_table_obj or self._create_table(table_props)
        self.topic = existing_topic_obj or sns.Topic(self, "Topic", **{"enforce_ssl": True, **(topic_props or {})})
        self.layer = NumpyLayer(self, "NumpyLayer", runtime=RUNTIME, architecture=architecture)
        # Events EventBridge could not deliver to the launcher or the watchdog, and the watchdog's failed runs.
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )
        for rule in ("AwsSolutions::AwsSolutions-SQS3", "Serverless::Serverless-SQSRedrivePolicy"):
            self._acknowledge(
                self.dead_letter_queue,
                rule,
                "This queue is itself the dead-letter queue of the launcher's and the watchdog's EventBridge "
                "targets and the watchdog's on-failure destination (cdk-nag only recognizes an SQS redrive); "
                "nothing consumes it, so a redrive to a further queue would never fire.",
            )
        if notification_email:
            # A message SNS cannot deliver to the address (after its retries) waits in the DLQ too.
            self.topic.add_subscription(
                subscriptions.EmailSubscription(notification_email, dead_letter_queue=self.dead_letter_queue)
            )

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
                # The launcher refuses a run beyond this many running ones, and one that cannot fit the memory.
                "LNN_MAX_RUNNING_RUNS": str(max_running_runs),
                "LNN_TRAINER_MEMORY_MB": str(memory_size),
                **trainer_environment,
            },
            memory_size=memory_size,  # it loads the training data to validate it, as the trainer does
            timeout=timeout,
            reserved_concurrent_executions=launcher_reserved_concurrency,
            # A launch that fails (bad parameters.json) is otherwise visible only in the logs.
            on_failure=destinations.SnsDestination(self.topic),
        )
        self.watchdog_function = self._function(
            "WatchdogLambda",
            handler="lnn_core.handlers.watchdog",
            description="LNN watchdog: resumes runs that made no progress for LNN_STALL_SECONDS",
            environment={
                "LNN_STALL_SECONDS": str(int(stall_after.to_seconds())),
                # For its stall judgement: how long a step may run, and how long Lambda may hold a step's event.
                "LNN_TRAINER_TIMEOUT_SECONDS": str(int(timeout.to_seconds())),
                "LNN_EVENT_AGE_SECONDS": str(int(TRAINER_MAX_EVENT_AGE.to_seconds())),
                **trainer_environment,
            },
            memory_size=WATCHDOG_MEMORY_MB,
            timeout=WATCHDOG_TIMEOUT,
            retry_attempts=0,  # the next scheduled run is the retry
            # A failed watchdog run lands in the DLQ, whose alarm notifies the topic once, not every 5 minutes.
            on_failure=_SendOnlyQueueDestination(self.dead_letter_queue),
        )
        self.predict_function: lambda_.Function | None = None
        self.predict_url: lambda_.FunctionUrl | None = None
        if predict:
            self.predict_function = self._function(
                "PredictLambda",
                handler="lnn_core.handlers.predict",
                description="LNN predictor: a run's model.npz answers rows of X synchronously",
                environment={"LNN_BUCKET": self.bucket.bucket_name},
                memory_size=predict_memory_size,
                timeout=PREDICT_TIMEOUT,
            )
            if predict_url:
                # Signed requests only (SigV4, lambda:InvokeFunctionUrl): never an open URL.
                self.predict_url = self.predict_function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
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
            targets=[self._rule_target(self.launch_function)],
        )
        self.watchdog_rule = events.Rule(
            self,
            "WatchdogSchedule",
            description="Runs the LNN watchdog, which resumes stalled runs",
            schedule=events.Schedule.rate(watchdog_rate),
            # A watchdog event older than one period is superseded by the next one: to the DLQ with it.
            targets=[self._rule_target(self.watchdog_function, max_event_age=watchdog_rate)],
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
        self.dead_letter_alarm = cloudwatch.Alarm(
            self,
            "DeadLetterAlarm",
            alarm_description=(
                "LNN guard rail: an event for the launcher or the watchdog, a watchdog run or an e-mail delivery "
                "failed and waits in the dead-letter queue (kept 14 days)"
            ),
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=ALARM_PERIOD, statistic="Maximum"
            ),
            threshold=0,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self._notify_topic(self.invocations_alarm, self.dead_letter_alarm)
        self.dashboard = self._create_dashboard()
        self._acknowledge_serverless_findings()

    def _alarm_by_name(self, alarm: cloudwatch.Alarm) -> cloudwatch.IAlarm:
        """The alarm with its ARN built from its name (a Ref): the emulator's CloudFormation has no Fn::GetAtt of an alarm."""
        arn = Stack.of(self).format_arn(service="cloudwatch", resource="alarm", resource_name=alarm.alarm_name,
                                        arn_format=ArnFormat.COLON_RESOURCE_NAME)
        return cloudwatch.Alarm.from_alarm_arn(self, f"{alarm.node.id}ByName", arn)

    def _create_dashboard(self) -> cloudwatch.Dashboard:
        """The trainer's EMF metrics (Cost, Steps: namespace LNN, dimension service=lnn, as `Metrics` emits them),
        its errors, throttles and p99 duration, the invocations alarm, and the PredictLambda's invocations and errors."""
        def lnn_metric(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=POWERTOOLS_ENVIRONMENT["POWERTOOLS_METRICS_NAMESPACE"], metric_name=name,
                                     dimensions_map={"service": POWERTOOLS_ENVIRONMENT["POWERTOOLS_SERVICE_NAME"]},
                                     statistic=statistic, period=DASHBOARD_PERIOD)

        trainer = self.trainer_function
        dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Trainer cost (mean of the epochs' costs)", width=12,
                                   left=[lnn_metric("Cost", "Average")], right=[lnn_metric("Cost", "Minimum")]),
            cloudwatch.GraphWidget(title="Trainer steps", width=12, left=[lnn_metric("Steps", "Sum")]),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Trainer errors and throttles", width=8, left=[
                trainer.metric_errors(period=DASHBOARD_PERIOD, statistic="Sum"),
                trainer.metric_throttles(period=DASHBOARD_PERIOD, statistic="Sum"),
            ]),
            cloudwatch.GraphWidget(title="Trainer duration p99", width=8,
                                   left=[trainer.metric_duration(period=DASHBOARD_PERIOD, statistic="p99")]),
            cloudwatch.AlarmWidget(title="Trainer invocations alarm", width=8, alarm=self._alarm_by_name(self.invocations_alarm)),
        )
        if self.predict_function is not None:
            dashboard.add_widgets(cloudwatch.GraphWidget(title="PredictLambda invocations and errors", width=12, left=[
                self.predict_function.metric_invocations(period=DASHBOARD_PERIOD, statistic="Sum"),
                self.predict_function.metric_errors(period=DASHBOARD_PERIOD, statistic="Sum"),
            ]))
        return dashboard

    def _rule_target(
        self, function: lambda_.IFunction, *, max_event_age: Duration = RULE_MAX_EVENT_AGE
    ) -> targets.LambdaFunction:
        """EventBridge retries a delivery that fails (throttled, function missing), then puts it in the DLQ."""
        return targets.LambdaFunction(
            function,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=RULE_RETRY_ATTEMPTS,
            max_event_age=max_event_age,
        )

    def _notify_topic(self, *alarms: cloudwatch.Alarm) -> None:
        """The alarms' actions, and the topic policy statement that lets CloudWatch publish for these alarms only.

        A topic policy replaces SNS's default policy, and the one `enforce_ssl` creates holds only the TLS deny:
        without this allow, CloudWatch could not publish the alarms. (An existing topic keeps its own policy,
        which must allow them.)
        """
        for alarm in alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowLnnAlarmsToPublish",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"],
            resources=[self.topic.topic_arn],
            conditions={
                "ArnEquals": {"aws:SourceArn": [alarm.alarm_arn for alarm in alarms]},
                "StringEquals": {"aws:SourceAccount": Stack.of(self).account},
            },
        ))

    def _create_bucket(self, bucket_props: Mapping[str, Any] | None) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "Bucket",
            **{
                "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
                "enforce_ssl": True,
                "encryption": s3.BucketEncryption.S3_MANAGED,
                "versioned": True,  # an overwritten or deleted object can be restored (see NONCURRENT_EXPIRY)
                # Keep data and models on `cdk destroy`. (DESTROY deletes only an empty bucket: emptying it
                # needs auto_delete_objects, a custom resource, which this app does not use.)
                "removal_policy": RemovalPolicy.RETAIN,
                "lifecycle_rules": [
                    s3.LifecycleRule(
                        id="ExpireRunScratch",
                        tag_filters={SCRATCH_TAG_KEY: SCRATCH_TAG_VALUE},
                        expiration=SCRATCH_EXPIRY,
                        noncurrent_version_expiration=SCRATCH_NONCURRENT_EXPIRY,
                    ),
                    # S3 does not allow these actions in a rule that filters on tags, hence a rule of its own.
                    s3.LifecycleRule(
                        id="RunsOldVersionsAndUploads",
                        prefix=RUNS_PREFIX,
                        noncurrent_version_expiration=NONCURRENT_EXPIRY,
                        expired_object_delete_marker=True,
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
        scratch_objects = self.bucket.arn_for_objects(SCRATCH_OBJECTS)
        model_objects = self.bucket.arn_for_objects(MODEL_OBJECTS)
        table_arn = self.table.table_arn
        publish = iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn])
        invoke_trainer = iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.trainer_function.function_arn])
        # Without it S3 answers 403 instead of 404 for a missing key, and the engine could not tell "not written
        # yet" (HeadObject) or "no such data" from a permission error. It reveals key names under runs/ only:
        # S3 checks a missing key's GetObject/HeadObject against s3:prefix = the key, which matches runs/*.
        list_bucket = iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[self.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": f"{RUNS_PREFIX}*"}},
        )
        query_running_runs = iam.PolicyStatement(
            actions=["dynamodb:Query"], resources=[f"{table_arn}/index/{RUNS_BY_STATUS_INDEX}"]
        )
        statements = {
            self.trainer_function: [
                # It reads a run's data and its own state, writes only its scratch and the model (never a
                # run's data.npz or parameters.json), and deletes only scratch. PutObjectTagging: the engine
                # tags its scratch objects in the PutObject call.
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[run_objects]),
                iam.PolicyStatement(
                    actions=["s3:PutObject", "s3:PutObjectTagging"], resources=[scratch_objects, model_objects]
                ),
                iam.PolicyStatement(actions=["s3:DeleteObject"], resources=[scratch_objects]),
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
                query_running_runs,  # it counts the running runs against LNN_MAX_RUNNING_RUNS
                publish,
                invoke_trainer,
            ],
            self.watchdog_function: [
                query_running_runs,  # it looks for stalled runs among the running ones
                iam.PolicyStatement(actions=["dynamodb:GetItem", "dynamodb:UpdateItem"], resources=[table_arn]),
                publish,
                invoke_trainer,
            ],
        }
        if self.predict_function is not None:
            statements[self.predict_function] = [
                # It reads (GetObject, which HeadObject needs too) a run's model and nothing else; ListBucket under
                # runs/ turns a missing model's 403 into the 404 that tells "no such run" from "no model yet".
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[model_objects]),
                list_bucket,
            ]
        for function, function_statements in statements.items():
            for statement in function_statements:
                function.add_to_role_policy(statement)
        # Self-invocation through the role's default policy would make the function depend on a policy that
        # depends on the function: a cycle. A separate policy breaks it.
        iam.Policy(self, "TrainerSelfInvokePolicy", roles=[self.trainer_function.role], statements=[invoke_trainer])

        # cdk-nag AwsSolutions-IAM5 flags each object ARN with a '*': one acknowledgment per ARN and policy.
        object_reasons = {
            run_objects: f"GetObject only, within the {RUNS_PREFIX} prefix of this stack's bucket, where each run's "
            "keys (runs/<run_id>/...) are created at run time; no other prefix or bucket is readable.",
            scratch_objects: "Put and delete only the step scratch, runs/<run_id>/state/..., whose run ids and step "
            "keys are created at run time; a run's data.npz and parameters.json are not writable.",
            model_objects: "PutObject only on runs/<run_id>/model.npz, one key per run whose id is known only at "
            "run time; a run's data.npz and parameters.json are not writable.",
        }
        grants = [
            (self.trainer_function, (run_objects, scratch_objects, model_objects)),
            (self.launch_function, (run_objects,)),
        ]
        if self.predict_function is not None:
            grants.append((self.predict_function, (model_objects,)))
        for function, arns in grants:
            reasons = object_reasons
            if function is self.predict_function:
                reasons = {model_objects: "GetObject only on runs/<run_id>/model.npz, the trained model of a run whose "
                           "id is known only at run time; no run's data, parameters or scratch is readable."}
            for object_arn in arns:
                self._acknowledge(
                    function.role.node.find_child("DefaultPolicy"),
                    f"AwsSolutions::AwsSolutions-IAM5[Resource::{self._nag_resource(object_arn)}]",
                    reasons[object_arn],
                )

    @staticmethod
    def _acknowledge(construct: Construct, rule: str, reason: str) -> None:
        """One cdk-nag finding (one rule) on one construct, with its reason."""
        Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))

    def _acknowledge_serverless_findings(self) -> None:
        """The cdk-nag Serverless findings that stay, each on the one function it concerns."""
        functions = {
            "trainer": self.trainer_function,
            "launcher": self.launch_function,
            "watchdog": self.watchdog_function,
        }
        if self.predict_function is not None:
            functions["predictor"] = self.predict_function
        for name, function in functions.items():
            self._acknowledge(
                function.node.default_child,
                "Serverless::Serverless-LambdaTracing",
                f"Active X-Ray tracing on the {name} would need xray:PutTraceSegments and xray:PutTelemetryRecords "
                "on Resource '*' (X-Ray has no resource-level permissions), which this least-privilege role does "
                "not grant; Powertools logs and the run's DynamoDB items already trace each step.",
            )
        failure_targets = {
            "trainer": "the SNS topic, which names the failed step's event and error",
            "launcher": "the SNS topic, which names the failed launch's event and error",
            "watchdog": "the dead-letter queue, whose alarm notifies the topic",
        }
        if self.predict_function is not None:
            self._acknowledge(
                self.predict_function.node.default_child,
                "Serverless::Serverless-LambdaDLQ",
                "The predictor is only invoked synchronously (RequestResponse, or its Function URL): the caller "
                "receives every error in the response, and a DeadLetterConfig would never receive an event.",
            )
        for name, function in functions.items():
            if name not in failure_targets:
                continue
            self._acknowledge(
                function.node.default_child,
                "Serverless::Serverless-LambdaDLQ",
                "A DeadLetterConfig only catches failed asynchronous invocations, and for those the "
                f"{name}'s async invoke config already sends the event that failed every attempt to "
                f"{failure_targets[name]}; a DLQ as well would deliver each failure a second time.",
            )

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


@jsii.implements(lambda_.IDestination)
class _SendOnlyQueueDestination:
    """An on-failure destination on an SQS queue, granting the function only sqs:SendMessage on it (CDK's
    `SqsDestination` adds sqs:GetQueueAttributes and sqs:GetQueueUrl, which Lambda does not need to deliver)."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self._queue = queue

    def bind(self, _scope: Construct, fn: lambda_.IFunction, *, type=None) -> lambda_.DestinationConfig:  # noqa: A002
        fn.add_to_role_policy(iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self._queue.queue_arn]))
        return lambda_.DestinationConfig(destination=self._queue.queue_arn)
