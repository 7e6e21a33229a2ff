"""`RunStorage`: the bucket, table and topic the functions share, and the least-privilege grants on them."""

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from lnn_core.aws.run_record import (
    MESSAGE_DUE,
    RUNS_AWAITING_MESSAGE_INDEX,
    RUNS_BY_STATUS_INDEX,
)
from lnn_core.ml.parameters import TRIAL_SUFFIX
from lnn_core.protocol.layout import staged_model_key
from lnn_core.sweep.message import message_key
from lnn_core.sweep.record import ACTIVE_PREFIX, halving_key, start_key, sweep_data_key, sweep_key, trial_data_key
from lnn_stack.nag import acknowledge, acknowledge_object_arn

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
STAGED_MODEL_OBJECTS = staged_model_key("*", "*")  # an ending step's model, before its commit publishes it
# What the sweep controller (the watchdog) reads and writes of a sweep: its record, its data (read: the key of its
# MD5, never a run's data.npz) and each trial's copy (written: a trial's run id is <sweep>-tNNN), each trial's start
# mark, its message's claim, its halving rungs' arrivals; and the marks of the active sweeps.
SWEEP_RECORD_OBJECTS = sweep_key("*")
SWEEP_DATA_OBJECTS = sweep_data_key("*", "*")
TRIAL_DATA_OBJECTS = trial_data_key("*" + TRIAL_SUFFIX.partition("{")[0] + "*")  # runs/*-t*/data.npz
TRIAL_START_OBJECTS = start_key("*")
SWEEP_MESSAGE_OBJECTS = message_key("*")
HALVING_OBJECTS = halving_key("*")
ACTIVE_SWEEP_OBJECTS = ACTIVE_PREFIX + "*"


class RunStorage:
    """The bucket (data, checkpoints, models), the table (run records and epoch items) and the topic (run results,
    failed events, alarms), each given (`existing_*_obj`) or created under `scope` (ids Bucket, Table, Topic)
    from secure defaults that `*_props` override.

    The `grant_*` methods are the only grants on them, and each is least privilege: object actions under runs/
    only (writes only to the scratch and the model), item actions on this table only, Query on the
    runs-by-status index only, Publish on this topic only; each object ARN's cdk-nag IAM5 finding is acknowledged
    with the reason it is narrow.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        existing_bucket_obj: s3.IBucket | None,
        bucket_props: Mapping[str, Any] | None,
        existing_table_obj: dynamodb.ITable | None,
        table_props: Mapping[str, Any] | None,
        existing_topic_obj: sns.ITopic | None,
        topic_props: Mapping[str, Any] | None,
    ) -> None:
        self.bucket = existing_bucket_obj or self._create_bucket(scope, bucket_props)
        self._send_bucket_events_to_eventbridge()
        self.table = existing_table_obj or self._create_table(scope, table_props)
        self.topic = existing_topic_obj or sns.Topic(scope, "Topic", **{"enforce_ssl": True, **(topic_props or {})})
        # The table and topic every asynchronous function records runs in and announces them on.
        self.environment = {"LNN_TABLE": self.table.table_name, "LNN_TOPIC_ARN": self.topic.topic_arn}

    @staticmethod
    def _create_bucket(scope: Construct, bucket_props: Mapping[str, Any] | None) -> s3.Bucket:
        bucket = s3.Bucket(
            scope,
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
        acknowledge(
            bucket,
            "AwsSolutions::AwsSolutions-S1",
            "Server access logs would need a second bucket that `cdk destroy` cannot empty without a custom "
            "resource; the run record in DynamoDB and the function logs already say who trained what and when.",
        )
        return bucket

    def _send_bucket_events_to_eventbridge(self) -> None:
        """Set the L1 property: CDK's `event_bridge_enabled` and S3 notifications both add a custom resource."""
        cfn_bucket = self.bucket.node.default_child
        if isinstance(cfn_bucket, s3.CfnBucket):
            cfn_bucket.add_property_override(
                "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
            )
        # An imported bucket must already send its events to EventBridge (a bucket setting).

    @staticmethod
    def _create_table(scope: Construct, table_props: Mapping[str, Any] | None) -> dynamodb.Table:
        table = dynamodb.Table(
            scope,
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
        # Only ended runs whose message is still owed carry `message_due`: the watchdog's sweep queries them.
        table.add_global_secondary_index(
            index_name=RUNS_AWAITING_MESSAGE_INDEX,
            partition_key=dynamodb.Attribute(name=MESSAGE_DUE, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        return table

    def grant_read_runs(self, function: lambda_.Function) -> None:
        """s3:GetObject on runs/*: a run's data, parameters and the trainer's own state."""
        run_objects = self.bucket.arn_for_objects(f"{RUNS_PREFIX}*")
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[run_objects]))
        acknowledge_object_arn(
            function,
            run_objects,
            f"GetObject only, within the {RUNS_PREFIX} prefix of this stack's bucket, where each run's "
            "keys (runs/<run_id>/...) are created at run time; no other prefix or bucket is readable.",
        )

    def grant_write_scratch_and_model(self, function: lambda_.Function) -> None:
        """Put only the step scratch and the model (never a run's data.npz or parameters.json), delete only the
        scratch. PutObjectTagging: the engine tags its scratch objects in the PutObject call."""
        scratch_objects = self.bucket.arn_for_objects(SCRATCH_OBJECTS)
        model_objects = self.bucket.arn_for_objects(MODEL_OBJECTS)
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:PutObjectTagging"], resources=[scratch_objects, model_objects]
            )
        )
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:DeleteObject"], resources=[scratch_objects]))
        acknowledge_object_arn(
            function,
            scratch_objects,
            "Put and delete only the step scratch, runs/<run_id>/state/..., whose run ids and step "
            "keys are created at run time; a run's data.npz and parameters.json are not writable.",
        )
        acknowledge_object_arn(
            function,
            model_objects,
            "PutObject only on runs/<run_id>/model.npz, one key per run whose id is known only at "
            "run time; a run's data.npz and parameters.json are not writable.",
        )

    def grant_read_models(self, function: lambda_.Function) -> None:
        """s3:GetObject (which HeadObject needs too) on a run's model and nothing else."""
        model_objects = self.bucket.arn_for_objects(MODEL_OBJECTS)
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[model_objects]))
        acknowledge_object_arn(
            function,
            model_objects,
            "GetObject only on runs/<run_id>/model.npz, the trained model of a run whose "
            "id is known only at run time; no run's data, parameters or scratch is readable.",
        )

    def grant_publish_models(self, function: lambda_.Function) -> None:
        """Copy an ended run's model (a finish's, or a stop's) to where it is served: GetObject on the staged model
        and PutObject on the model, nothing else (the watchdog's sweep publishes a model whose finisher died after
        its commit)."""
        staged_objects = self.bucket.arn_for_objects(STAGED_MODEL_OBJECTS)
        model_objects = self.bucket.arn_for_objects(MODEL_OBJECTS)
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[staged_objects]))
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=[model_objects]))
        for objects, what in (
            (
                staged_objects,
                "GetObject only on runs/<run_id>/state/staged-model-e<epoch>.npz, the model "
                "a finish or stop step wrote before its commit",
            ),
            (model_objects, "PutObject only on runs/<run_id>/model.npz, where a committed run's model is published"),
        ):
            acknowledge_object_arn(function, objects, f"{what}; one key per run whose id is known only at run time.")

    def grant_list_runs(self, function: lambda_.Function) -> None:
        """s3:ListBucket for prefixes under runs/ only.

        Without it S3 answers 403 instead of 404 for a missing key, and the engine could not tell "not written
        yet" (HeadObject) or "no such data" from a permission error. It reveals key names under runs/ only:
        S3 checks a missing key's GetObject/HeadObject against s3:prefix = the key, which matches runs/*.
        """
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": f"{RUNS_PREFIX}*"}},
            )
        )

    def grant_drive_sweeps(self, function: lambda_.Function) -> None:
        """What a pass of the sweep controller does to S3 (`lnn_core.sweep.controller`): read a sweep's record; copy
        its data to a trial (GetObject on the sweep's data, PutObject on a trial's data.npz); create and read a
        trial's start mark, the sweep's message claim and its halving rungs' arrivals; list and delete the marks of
        the active sweeps. Nothing else."""
        bucket = self.bucket
        read_only, write_only, read_write = (
            [bucket.arn_for_objects(key) for key in (SWEEP_RECORD_OBJECTS, SWEEP_DATA_OBJECTS)],
            [bucket.arn_for_objects(TRIAL_DATA_OBJECTS)],
            [bucket.arn_for_objects(key) for key in (TRIAL_START_OBJECTS, SWEEP_MESSAGE_OBJECTS, HALVING_OBJECTS)],
        )
        active = bucket.arn_for_objects(ACTIVE_SWEEP_OBJECTS)
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=read_only + read_write))
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=write_only + read_write))
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:DeleteObject"], resources=[active]))
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": ACTIVE_SWEEP_OBJECTS}},
            )
        )
        for key, what in (
            (SWEEP_RECORD_OBJECTS, "GetObject only on runs/<sweep>/sweep.json, a sweep's record"),
            (SWEEP_DATA_OBJECTS, "GetObject only on runs/<sweep>/data-<md5>.npz, a sweep's data"),
            (TRIAL_DATA_OBJECTS, "PutObject only on runs/<sweep>-t<n>/data.npz: a sweep's data copied to a trial"),
            (TRIAL_START_OBJECTS, "Get and Put only on runs/<trial>/trial.json, the mark of a sweep trial's start"),
            (SWEEP_MESSAGE_OBJECTS, "Get and Put only on runs/<sweep>/sweep-message.json, the claim of its message"),
            (HALVING_OBJECTS, "Get and Put only on runs/<sweep>/halving.json, its halving rungs' arrivals"),
            (ACTIVE_SWEEP_OBJECTS, "DeleteObject only on sweeps/active/<sweep>, the mark of a sweep not yet done"),
        ):
            acknowledge_object_arn(
                function, bucket.arn_for_objects(key), f"{what}; one key per sweep or trial, named at run time."
            )

    def grant_items(self, function: lambda_.Function, *actions: str) -> None:
        """These DynamoDB item actions on the table itself (not its index)."""
        function.add_to_role_policy(iam.PolicyStatement(actions=list(actions), resources=[self.table.table_arn]))

    def grant_query_running_runs(self, function: lambda_.Function) -> None:
        """dynamodb:Query on the runs-by-status index only."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"], resources=[f"{self.table.table_arn}/index/{RUNS_BY_STATUS_INDEX}"]
            )
        )

    def grant_query_messages_owed(self, function: lambda_.Function) -> None:
        """dynamodb:Query on the runs-awaiting-message index only."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"], resources=[f"{self.table.table_arn}/index/{RUNS_AWAITING_MESSAGE_INDEX}"]
            )
        )

    def grant_publish(self, function: lambda_.Function) -> None:
        """sns:Publish on the topic."""
        function.add_to_role_policy(iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn]))
