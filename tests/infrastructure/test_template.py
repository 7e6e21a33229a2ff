"""The synthesized template with default settings: every resource, property and IAM statement of the contract."""

import json

import pytest
from aws_cdk.assertions import Match

from lnn_stack.functions import RUNTIME
from tests.infrastructure.conftest import DEFAULT_TRAINING


def ref(logical_id: str) -> dict:
    return {"Ref": logical_id}


def arn(logical_id: str) -> dict:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def statements(policy: dict) -> list[tuple]:
    """A policy's statements as (sorted actions, resource as JSON[, condition as JSON]), sorted; every one must
    be an Allow of actions on resources, with a condition or not."""
    result = []
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        assert set(statement) - {"Condition"} == {"Action", "Effect", "Resource"}, statement
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        entry = (tuple(sorted(actions)), json.dumps(statement["Resource"], sort_keys=True))
        if "Condition" in statement:
            entry += (json.dumps(statement["Condition"], sort_keys=True),)
        result.append(entry)
    return sorted(result)


def expected(*entries) -> list[tuple]:
    result = []
    for actions, resource, *condition in entries:
        entry = (tuple(sorted(actions)), json.dumps(resource, sort_keys=True))
        result.append(entry + tuple(json.dumps(c, sort_keys=True) for c in condition))
    return sorted(result)


@pytest.fixture(scope="module")
def ids(synthesized, trainer):
    """Logical ids of the construct's resources."""
    return {
        name: synthesized.logical_id(construct)
        for name, construct in {
            "bucket": trainer.bucket,
            "table": trainer.table,
            "topic": trainer.topic,
            "layer": trainer.layer.layer_version,
            "trainer": trainer.trainer_function,
            "launcher": trainer.launch_function,
            "watchdog": trainer.watchdog_function,
            "predictor": trainer.predict_function,
            "predictor_role": trainer.predict_function.role,
            "predictor_logs": trainer.predict_function.log_group,
            "dashboard": trainer.dashboard,
            "trainer_role": trainer.trainer_function.role,
            "launcher_role": trainer.launch_function.role,
            "watchdog_role": trainer.watchdog_function.role,
            "trainer_logs": trainer.trainer_function.log_group,
            "launcher_logs": trainer.launch_function.log_group,
            "watchdog_logs": trainer.watchdog_function.log_group,
            "dlq": trainer.dead_letter_queue,
            "launch_rule": trainer.launch_rule,
            "watchdog_rule": trainer.watchdog_rule,
            "invocations_alarm": trainer.invocations_alarm,
            "dlq_alarm": trainer.dead_letter_alarm,
        }.items()
    }


def test_exactly_these_resources_and_no_custom_resource(synthesized):
    counts = {}
    for resource in synthesized.resources.values():
        counts[resource["Type"]] = counts.get(resource["Type"], 0) + 1
    assert counts == {
        "AWS::S3::Bucket": 1,
        "AWS::S3::BucketPolicy": 1,
        "AWS::DynamoDB::Table": 1,
        "AWS::SNS::Topic": 1,
        "AWS::SNS::TopicPolicy": 1,
        "AWS::Lambda::LayerVersion": 1,
        "AWS::Logs::LogGroup": 4,
        "AWS::IAM::Role": 4,
        "AWS::IAM::Policy": 5,
        "AWS::Lambda::Function": 4,
        "AWS::Lambda::EventInvokeConfig": 3,
        "AWS::Events::Rule": 2,
        "AWS::Lambda::Permission": 2,
        "AWS::CloudWatch::Alarm": 2,
        "AWS::CloudWatch::Dashboard": 1,
        "AWS::SQS::Queue": 1,
        "AWS::SQS::QueuePolicy": 1,
    }
    assert not [key for key, resource in synthesized.resources.items() if resource["Type"].startswith("Custom::")]


def test_functions_runtime_handlers_architecture_layer_and_log_groups(synthesized, ids):
    for name, handler, memory, timeout, reserved in [
        ("trainer", "lnn_core.handlers.train", 1024, 300, 20),
        ("launcher", "lnn_core.handlers.launch", 1024, 300, 2),
        ("watchdog", "lnn_core.handlers.watchdog", 256, 60, None),
        ("predictor", "lnn_core.handlers.predict", 1024, 30, None),  # synchronous: no reservation, no async config
    ]:
        properties = synthesized.resources[ids[name]]["Properties"]
        assert properties["Runtime"] == RUNTIME.name == "python3.14"
        assert properties["Handler"] == handler
        assert properties["Architectures"] == ["arm64"]
        assert (properties["MemorySize"], properties["Timeout"]) == (memory, timeout)
        assert properties["Layers"] == [ref(ids["layer"])]
        assert properties["LoggingConfig"] == {"LogGroup": ref(ids[f"{name}_logs"])}
        assert properties["Role"] == arn(ids[f"{name}_role"])
        # Cost cap: the trainer's default reservation and the launcher's small one; the watchdog runs alone.
        assert properties.get("ReservedConcurrentExecutions") == reserved


def test_only_the_trainer_allows_recursive_loops(synthesized, ids):
    assert synthesized.resources[ids["trainer"]]["Properties"]["RecursiveLoop"] == "Allow"
    for name in ("launcher", "watchdog", "predictor"):
        assert "RecursiveLoop" not in synthesized.resources[ids[name]]["Properties"]


def test_code_is_the_lambda_src_asset(synthesized, ids):
    keys = {
        synthesized.resources[ids[name]]["Properties"]["Code"]["S3Key"]
        for name in ("trainer", "launcher", "watchdog", "predictor")
    }
    assert len(keys) == 1
    assets = json.loads((synthesized.assembly_dir / f"{synthesized.stack.stack_name}.assets.json").read_text())
    (code_asset,) = [
        asset
        for asset in assets["files"].values()
        if any(d["objectKey"] in keys for d in asset["destinations"].values())
    ]
    staged = synthesized.assembly_dir / code_asset["source"]["path"]
    assert (staged / "lnn_core" / "handlers.py").is_file()
    assert not list(staged.rglob("__pycache__"))


def test_environment_variables(synthesized, ids):
    def environment(name):
        return synthesized.resources[ids[name]]["Properties"]["Environment"]["Variables"]

    powertools = {"POWERTOOLS_SERVICE_NAME": "lnn", "POWERTOOLS_METRICS_NAMESPACE": "LNN"}
    shared = {"LNN_TABLE": ref(ids["table"]), "LNN_TOPIC_ARN": ref(ids["topic"]), **powertools}
    # The trainer learns its own name from AWS_LAMBDA_FUNCTION_NAME: its own ARN here would be a cycle; and the
    # watchdog's (a sweep trial's end kicks it) as a name fixed at synth time, not a reference (a cycle too).
    watchdog_name = synthesized.resources[ids["watchdog"]]["Properties"]["FunctionName"]
    assert isinstance(watchdog_name, str) and watchdog_name.endswith("-watchdog") and len(watchdog_name) <= 64
    assert environment("trainer") == {
        "LNN_BUCKET": ref(ids["bucket"]),
        "LNN_WATCHDOG_FUNCTION": watchdog_name,
        **shared,
    }
    launcher = environment("launcher")
    assert json.loads(launcher.pop("LNN_TRAINING_DEFAULTS")) == DEFAULT_TRAINING
    assert launcher == {
        "LNN_BUCKET": ref(ids["bucket"]),
        "LNN_TRAINER_FUNCTION": ref(ids["trainer"]),
        "LNN_MAX_RUNNING_RUNS": "10",  # max_running_runs
        "LNN_TRAINER_MEMORY_MB": "1024",  # the trainer's memory size: a run that cannot fit is refused
        "LNN_TRAINER_RESERVED_CONCURRENCY": "20",  # a run with more shard workers than this is refused
        **shared,
    }
    assert environment("watchdog") == {
        "LNN_TRAINER_FUNCTION": ref(ids["trainer"]),
        "LNN_STALL_SECONDS": "900",
        "LNN_TRAINER_TIMEOUT_SECONDS": "300",  # the trainer's timeout
        "LNN_EVENT_AGE_SECONDS": "21600",  # the trainer's MaximumEventAgeInSeconds
        "LNN_BUCKET": ref(ids["bucket"]),  # it publishes the model of a run still owed its message
        # it drives sweeps: it launches a queued trial, within the launcher's limits
        "LNN_LAUNCH_FUNCTION": ref(ids["launcher"]),
        "LNN_MAX_RUNNING_RUNS": "10",
        "LNN_TRAINER_RESERVED_CONCURRENCY": "20",
        **shared,
    }
    # The predictor reads models from the bucket; it has no table, topic or function to reach.
    assert environment("predictor") == {"LNN_BUCKET": ref(ids["bucket"]), **powertools}


def test_log_groups_keep_seven_days_and_are_destroyed_with_the_stack(synthesized):
    log_groups = synthesized.of_type("AWS::Logs::LogGroup")
    assert len(log_groups) == 4  # one per function
    for log_group in log_groups.values():
        assert log_group["Properties"] == {"RetentionInDays": 7}
        assert log_group["DeletionPolicy"] == log_group["UpdateReplacePolicy"] == "Delete"


def test_roles_are_assumed_by_lambda_and_carry_no_managed_policy(synthesized):
    for role in synthesized.of_type("AWS::IAM::Role").values():
        assert role["Properties"] == {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
                ],
                "Version": "2012-10-17",
            }
        }


def test_every_iam_statement_has_exact_actions_and_resources(synthesized, trainer, ids):
    def objects(pattern):
        return {"Fn::Join": ["", [arn(ids["bucket"]), pattern]]}

    run_objects, scratch, model = objects("/runs/*"), objects("/runs/*/state/*"), objects("/runs/*/model.npz")
    staged_model = objects("/runs/*/state/staged-model-e*.npz")
    sweep_objects = [
        objects(key) for key in ("/runs/*/trial.json", "/runs/*/sweep-message.json", "/runs/*/halving.json")
    ]
    # ListBucket only so that a missing key answers 404, and only for keys under runs/ (S3 checks a missing
    # key's GetObject against s3:prefix = the key).
    runs_prefix_only = {"StringLike": {"s3:prefix": "runs/*"}}
    policies = {
        name: synthesized.resource(function.role.node.find_child("DefaultPolicy"))
        for name, function in [
            ("trainer", trainer.trainer_function),
            ("launcher", trainer.launch_function),
            ("watchdog", trainer.watchdog_function),
            ("predictor", trainer.predict_function),
        ]
    }
    assert statements(policies["trainer"]) == expected(
        (["logs:CreateLogStream", "logs:PutLogEvents"], arn(ids["trainer_logs"])),
        (["s3:GetObject"], run_objects),
        (["s3:PutObject", "s3:PutObjectTagging"], [scratch, model]),  # never a run's data.npz or parameters.json
        (["s3:DeleteObject"], scratch),
        (["s3:ListBucket"], arn(ids["bucket"]), runs_prefix_only),
        (
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"],
            arn(ids["table"]),
        ),
        (["sns:Publish"], ref(ids["topic"])),
        # a sweep trial's end kicks the watchdog (its ARN by its fixed name)
        (["lambda:InvokeFunction"], function_arn(synthesized.resources[ids["watchdog"]]["Properties"]["FunctionName"])),
    )
    assert statements(policies["launcher"]) == expected(
        (["logs:CreateLogStream", "logs:PutLogEvents"], arn(ids["launcher_logs"])),
        (["s3:GetObject"], run_objects),
        (["s3:ListBucket"], arn(ids["bucket"]), runs_prefix_only),
        (["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], arn(ids["table"])),
        # It counts the running runs (max_running_runs) in the status index.
        (["dynamodb:Query"], {"Fn::Join": ["", [arn(ids["table"]), "/index/runs-by-status"]]}),
        (["sns:Publish"], ref(ids["topic"])),
        (["lambda:InvokeFunction"], arn(ids["trainer"])),
    )
    assert statements(policies["watchdog"]) == expected(
        (["logs:CreateLogStream", "logs:PutLogEvents"], arn(ids["watchdog_logs"])),
        (["dynamodb:Query"], {"Fn::Join": ["", [arn(ids["table"]), "/index/runs-by-status"]]}),
        (["dynamodb:Query"], {"Fn::Join": ["", [arn(ids["table"]), "/index/runs-awaiting-message"]]}),
        (["dynamodb:GetItem", "dynamodb:UpdateItem"], arn(ids["table"])),
        # It publishes the model of a run still owed its message: the staged model to the served key, no more.
        (["s3:GetObject"], staged_model),
        (["s3:PutObject"], model),
        # ListBucket under runs/ only: a staged model `lnn resume` already published and removed answers 404, not 403
        (["s3:ListBucket"], arn(ids["bucket"]), runs_prefix_only),
        (["sns:Publish"], ref(ids["topic"])),
        (["lambda:InvokeFunction"], arn(ids["trainer"])),
        # It drives sweeps: a sweep's record; its data (the key of its MD5, never a run's data.npz) copied to a
        # trial's data.npz (a trial's id only), a trial's start mark, the sweep's message claim, its halving rungs'
        # arrivals; the active sweeps' marks listed and removed; a trial launched.
        (["s3:GetObject"], [objects("/runs/*/sweep.json"), objects("/runs/*/data-*.npz"), *sweep_objects]),
        (["s3:PutObject"], [objects("/runs/*-t*/data.npz"), *sweep_objects]),
        (["s3:DeleteObject"], objects("/sweeps/active/*")),
        (["s3:ListBucket"], arn(ids["bucket"]), {"StringLike": {"s3:prefix": "sweeps/active/*"}}),
        (["lambda:InvokeFunction"], arn(ids["launcher"])),
        # Its on-failure destination, the DLQ (Lambda sends through the function's role).
        (["sqs:SendMessage"], arn(ids["dlq"])),
    )
    # The predictor reads a run's model.npz (GetObject; HeadObject needs it too) and nothing else; ListBucket under
    # runs/ makes a missing model a 404, which tells an unknown run from a run without a model.
    assert statements(policies["predictor"]) == expected(
        (["logs:CreateLogStream", "logs:PutLogEvents"], arn(ids["predictor_logs"])),
        (["s3:GetObject"], model),
        (["s3:ListBucket"], arn(ids["bucket"]), runs_prefix_only),
    )


def function_arn(name: str) -> dict:
    """A function's ARN by its name, as `Stack.format_arn` writes it."""
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":lambda:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":function:{name}",
            ],
        ]
    }


def test_the_trainer_may_invoke_only_itself_through_a_separate_policy(synthesized, trainer, ids):
    self_invoke = synthesized.resources[synthesized.logical_id(trainer.node.find_child("TrainerSelfInvokePolicy"))]
    assert self_invoke["Type"] == "AWS::IAM::Policy"
    assert self_invoke["Properties"]["Roles"] == [ref(ids["trainer_role"])]
    assert statements(self_invoke) == expected((["lambda:InvokeFunction"], arn(ids["trainer"])))


def test_the_policies_are_exactly_the_three_default_policies_and_the_self_invoke_policy(synthesized, ids):
    attached = sorted(
        policy["Properties"]["Roles"][0]["Ref"] for policy in synthesized.of_type("AWS::IAM::Policy").values()
    )
    assert attached == sorted(
        [ids["trainer_role"], ids["trainer_role"], ids["launcher_role"], ids["watchdog_role"], ids["predictor_role"]]
    )


def test_no_wildcard_action_anywhere(synthesized):
    for policy in synthesized.of_type("AWS::IAM::Policy").values():
        for actions, resource, *_ in statements(policy):
            assert all("*" not in action for action in actions), actions
            assert resource != json.dumps("*")


def test_async_invoke_configs(synthesized, ids):
    configs = {
        c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
        for c in synthesized.of_type("AWS::Lambda::EventInvokeConfig").values()
    }
    on_failure_topic = {"OnFailure": {"Destination": ref(ids["topic"])}}
    assert configs[ids["trainer"]] == {
        "FunctionName": ref(ids["trainer"]),
        "Qualifier": "$LATEST",
        "MaximumRetryAttempts": 2,
        "MaximumEventAgeInSeconds": 6 * 3600,
        "DestinationConfig": on_failure_topic,
    }
    assert configs[ids["launcher"]] == {
        "FunctionName": ref(ids["launcher"]),
        "Qualifier": "$LATEST",
        "DestinationConfig": on_failure_topic,
    }
    assert configs[ids["watchdog"]] == {
        "FunctionName": ref(ids["watchdog"]),
        "Qualifier": "$LATEST",
        "MaximumRetryAttempts": 0,
        "DestinationConfig": {"OnFailure": {"Destination": arn(ids["dlq"])}},
    }


def test_bucket(synthesized, ids):
    bucket = synthesized.resources[ids["bucket"]]
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
    assert bucket["Properties"] == {
        # An overwritten or deleted data.npz, parameters.json or model.npz can be restored for 7 days.
        "VersioningConfiguration": {"Status": "Enabled"},
        "BucketEncryption": {
            "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        },
        # S3 -> EventBridge, set on the L1: no Custom::S3BucketNotifications.
        "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
        "LifecycleConfiguration": {
            "Rules": [
                # The scratch churns: its old versions go after a day.
                {
                    "Id": "ExpireRunScratch",
                    "Status": "Enabled",
                    "ExpirationInDays": 7,
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                    "TagFilters": [{"Key": "lnn-scratch", "Value": "true"}],
                },
                {
                    "Id": "RunsOldVersionsAndUploads",
                    "Status": "Enabled",
                    "Prefix": "runs/",
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
                    "ExpiredObjectDeleteMarker": True,
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                },
            ]
        },
    }


def test_scratch_tag_matches_the_engine(synthesized):
    from lnn_core.aws.ports import SCRATCH_TAG
    from lnn_stack.storage import SCRATCH_TAG_KEY, SCRATCH_TAG_VALUE

    assert SCRATCH_TAG == f"{SCRATCH_TAG_KEY}={SCRATCH_TAG_VALUE}"


def test_bucket_and_topic_policies_deny_requests_without_tls(synthesized, ids):
    synthesized.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": ref(ids["bucket"]),
            "PolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Effect": "Deny",
                            "Action": "s3:*",
                            "Principal": {"AWS": "*"},
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    )
                ]
            },
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "Topics": [ref(ids["topic"])],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "sns:Publish",
                                "Principal": "*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_table(synthesized, ids):
    table = synthesized.resources[ids["table"]]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert table["Properties"] == {
        "KeySchema": [{"AttributeName": "run_id", "KeyType": "HASH"}, {"AttributeName": "epoch", "KeyType": "RANGE"}],
        "AttributeDefinitions": [
            {"AttributeName": "run_id", "AttributeType": "S"},
            {"AttributeName": "epoch", "AttributeType": "N"},
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "message_due", "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "runs-by-status",
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
            {  # sparse: only ended runs whose message is still owed have `message_due`
                "IndexName": "runs-awaiting-message",
                "KeySchema": [{"AttributeName": "message_due", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
    }


def test_topic_has_no_subscription_without_an_email(synthesized):
    assert synthesized.of_type("AWS::SNS::Topic")
    assert not synthesized.of_type("AWS::SNS::Subscription")


def test_layer(synthesized, ids):
    properties = synthesized.resources[ids["layer"]]["Properties"]
    assert properties["CompatibleRuntimes"] == ["python3.14"]
    assert properties["CompatibleArchitectures"] == ["arm64"]
    assert properties["Description"] == (
        "numpy==2.4.6, aws-lambda-powertools==3.37.0 for Python 3.14 on manylinux_2_28_aarch64"
    )


def test_parameters_upload_rule_starts_the_launcher(synthesized, trainer, ids):
    rule = synthesized.resource(trainer.launch_rule)["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [ref(ids["bucket"])]},
            "object": {"key": [{"wildcard": "runs/*/parameters.json"}]},
        },
    }
    assert rule["Targets"] == [
        {
            "Arn": arn(ids["launcher"]),
            "Id": "Target0",
            # A delivery that fails is retried, then kept in the DLQ (whose alarm notifies the topic).
            "DeadLetterConfig": {"Arn": arn(ids["dlq"])},
            "RetryPolicy": {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 7200},
        }
    ]
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": arn(ids["launcher"]),
            "Principal": "events.amazonaws.com",
            "SourceArn": arn(synthesized.logical_id(trainer.launch_rule)),
        },
    )


def test_watchdog_runs_on_a_schedule(synthesized, trainer, ids):
    rule = synthesized.resource(trainer.watchdog_rule)["Properties"]
    assert rule["ScheduleExpression"] == "rate(5 minutes)"
    assert rule["Targets"] == [
        {
            "Arn": arn(ids["watchdog"]),
            "Id": "Target0",
            "DeadLetterConfig": {"Arn": arn(ids["dlq"])},
            # An event older than one period is superseded by the next one.
            "RetryPolicy": {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 300},
        }
    ]
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": arn(ids["watchdog"]),
            "Principal": "events.amazonaws.com",
            "SourceArn": arn(synthesized.logical_id(trainer.watchdog_rule)),
        },
    )


def test_invocations_alarm_notifies_the_topic(synthesized, trainer, ids):
    alarm = dict(synthesized.resource(trainer.invocations_alarm)["Properties"])
    assert alarm.pop("AlarmDescription").startswith("LNN guard rail")
    assert alarm == {
        "Namespace": "AWS/Lambda",
        "MetricName": "Invocations",
        "Dimensions": [{"Name": "FunctionName", "Value": ref(ids["trainer"])}],
        "Statistic": "Sum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 5000,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [ref(ids["topic"])],
    }


def test_outputs_are_the_contract_names(synthesized, ids):
    assert {name: output["Value"] for name, output in synthesized.outputs.items()} == {
        "BucketName": ref(ids["bucket"]),
        "TableName": ref(ids["table"]),
        "TopicArn": ref(ids["topic"]),
        "TrainerFunctionName": ref(ids["trainer"]),
        "LaunchFunctionName": ref(ids["launcher"]),
        "WatchdogFunctionName": ref(ids["watchdog"]),
        "PredictFunctionName": ref(ids["predictor"]),
        "DashboardName": ref(ids["dashboard"]),
    }


def test_no_dependency_cycle(synthesized):
    """CloudFormation rejects a template whose resources depend on each other in a circle."""

    def references(node):
        if isinstance(node, dict):
            if "Ref" in node:
                yield node["Ref"]
            if "Fn::GetAtt" in node:
                yield node["Fn::GetAtt"][0]
            for value in node.values():
                yield from references(value)
        elif isinstance(node, list):
            for value in node:
                yield from references(value)

    graph = {
        key: {
            dep
            for dep in [*references(resource.get("Properties", {})), *resource.get("DependsOn", [])]
            if dep in synthesized.resources
        }
        for key, resource in synthesized.resources.items()
    }
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {key for key, deps in graph.items() if key not in done and deps <= done}
        assert ready, f"dependency cycle among {sorted(set(graph) - done)}"
        done |= ready


def test_dead_letter_queue_is_encrypted_tls_only_and_keeps_messages_14_days(synthesized, ids):
    queue = synthesized.resources[ids["dlq"]]
    assert queue["Properties"] == {"MessageRetentionPeriod": 14 * 24 * 3600, "SqsManagedSseEnabled": True}
    (policy,) = synthesized.of_type("AWS::SQS::QueuePolicy").values()
    assert policy["Properties"]["Queues"] == [ref(ids["dlq"])]
    deny, *allows = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny == {
        "Action": "sqs:*",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": arn(ids["dlq"]),
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    # Only the two rules may send their undeliverable events (the watchdog sends through its role).
    assert sorted(
        (a["Principal"], a["Action"], a["Resource"] == arn(ids["dlq"]), json.dumps(a["Condition"], sort_keys=True))
        for a in allows
    ) == sorted(
        (
            {"Service": "events.amazonaws.com"},
            "sqs:SendMessage",
            True,
            json.dumps({"ArnEquals": {"aws:SourceArn": arn(ids[rule])}}, sort_keys=True),
        )
        for rule in ("launch_rule", "watchdog_rule")
    )


def test_dead_letter_alarm_notifies_the_topic_when_a_message_waits(synthesized, ids):
    alarm = dict(synthesized.resources[ids["dlq_alarm"]]["Properties"])
    assert alarm.pop("AlarmDescription").startswith("LNN guard rail")
    assert alarm == {
        "Namespace": "AWS/SQS",
        "MetricName": "ApproximateNumberOfMessagesVisible",
        "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [ids["dlq"], "QueueName"]}}],
        "Statistic": "Maximum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [ref(ids["topic"])],
    }


def test_the_topic_policy_lets_cloudwatch_publish_for_these_alarms_only(synthesized, ids):
    """A topic policy replaces SNS's default one: without this allow, no alarm could notify the topic."""
    (policy,) = synthesized.of_type("AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [ref(ids["topic"])]
    tls_deny, alarms_allow = policy["Properties"]["PolicyDocument"]["Statement"]
    assert tls_deny["Effect"] == "Deny"
    assert alarms_allow == {
        "Sid": "AllowLnnAlarmsToPublish",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": "sns:Publish",
        "Resource": ref(ids["topic"]),
        "Condition": {
            "ArnEquals": {"aws:SourceArn": [arn(ids["invocations_alarm"]), arn(ids["dlq_alarm"])]},
            "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        },
    }
    # Every alarm that notifies the topic is named in the condition.
    notifying = {
        key
        for key, alarm in synthesized.of_type("AWS::CloudWatch::Alarm").items()
        if ref(ids["topic"]) in alarm["Properties"].get("AlarmActions", [])
    }
    assert notifying == {ids["invocations_alarm"], ids["dlq_alarm"]}
    # Every other publisher is a function, through its role: the topic is the target of no rule or bucket.
    publishers = {
        key
        for key, p in synthesized.of_type("AWS::IAM::Policy").items()
        if any("sns:Publish" in json.dumps(st["Action"]) for st in p["Properties"]["PolicyDocument"]["Statement"])
    }
    assert len(publishers) == 3
    for rule in synthesized.of_type("AWS::Events::Rule").values():
        assert all(target["Arn"] != ref(ids["topic"]) for target in rule["Properties"]["Targets"])


def test_a_missing_key_still_answers_404_with_list_bucket(monkeypatch):
    """moto does not enforce IAM, so the policy's shape is asserted above; this checks the code's side: a
    GetObject/HeadObject for a missing key answers NoSuchKey/404, which the store maps to "missing"."""
    import boto3
    import pytest
    from botocore.exceptions import ClientError
    from moto import mock_aws

    from lnn_core.aws.ports import S3ObjectStore
    from lnn_core.aws.sdk import IoCounter
    from lnn_core.errors import RunFailure

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="lnn-test")
        client.put_bucket_versioning(Bucket="lnn-test", VersioningConfiguration={"Status": "Enabled"})
        with pytest.raises(ClientError) as caught:
            client.get_object(Bucket="lnn-test", Key="runs/r1/data.npz")
        assert caught.value.response["Error"]["Code"] == "NoSuchKey"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        store = S3ObjectStore(client, "lnn-test", IoCounter())
        assert store.head("runs/r1/state/params-e0000001.npz") is None
        with pytest.raises(RunFailure, match="is missing"):
            store.get_bytes("runs/r1/data.npz")
        # A deleted object (a delete marker in the versioned bucket) answers the same.
        client.put_object(Bucket="lnn-test", Key="runs/r1/state/x.npz", Body=b"x")
        store.delete_keys(["runs/r1/state/x.npz"])
        assert store.head("runs/r1/state/x.npz") is None


# ---- the PredictLambda's options and the dashboard ------------------------------------------------------------------


def test_the_predictor_is_only_invoked_synchronously(synthesized, ids):
    configs = [
        c["Properties"]["FunctionName"]["Ref"] for c in synthesized.of_type("AWS::Lambda::EventInvokeConfig").values()
    ]
    assert ids["predictor"] not in configs
    assert not synthesized.of_type("AWS::Lambda::Url")  # predict_url is off by default
    assert not [
        p
        for p in synthesized.of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] in (ref(ids["predictor"]), arn(ids["predictor"]))
    ]


def dashboard_widgets(synthesized, ids) -> list[dict]:
    body = synthesized.resources[ids["dashboard"]]["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1]
    # Tokens (function names, the alarm's ARN) become placeholders: the widgets' layout and metrics stay readable.
    text = "".join(part if isinstance(part, str) else json.dumps(json.dumps(part))[1:-1] for part in parts)
    return json.loads(text)["widgets"]


def test_dashboard_shows_the_trainer_metrics_the_alarm_and_the_predictor(synthesized, ids):
    widgets = dashboard_widgets(synthesized, ids)
    titles = [widget["properties"]["title"] for widget in widgets]
    assert titles == [
        "Trainer cost (mean of the epochs' costs)",
        "Trainer steps",
        "Trainer errors and throttles",
        "Trainer duration p99",
        "Trainer invocations alarm",
        "PredictLambda invocations and errors",
    ]
    metrics = {widget["properties"]["title"]: widget["properties"].get("metrics") for widget in widgets}
    # The EMF metrics as Powertools emits them: namespace LNN, dimension service=lnn (handlers.build_trainer).
    assert metrics["Trainer cost (mean of the epochs' costs)"][0][:4] == ["LNN", "Cost", "service", "lnn"]
    assert metrics["Trainer steps"] == [["LNN", "Steps", "service", "lnn", {"stat": "Sum"}]]
    trainer_name, predictor_name = json.dumps(ref(ids["trainer"])), json.dumps(ref(ids["predictor"]))
    names = [(m[1], m[3], m[4]["stat"]) for m in metrics["Trainer errors and throttles"]]
    assert names == [("Errors", trainer_name, "Sum"), ("Throttles", trainer_name, "Sum")]
    [duration] = metrics["Trainer duration p99"]
    assert (duration[1], duration[3], duration[4]["stat"]) == ("Duration", trainer_name, "p99")
    predictor = [(m[1], m[3], m[4]["stat"]) for m in metrics["PredictLambda invocations and errors"]]
    assert predictor == [("Invocations", predictor_name, "Sum"), ("Errors", predictor_name, "Sum")]
    alarm = widgets[titles.index("Trainer invocations alarm")]["properties"]["annotations"]["alarms"]
    assert len(alarm) == 1 and json.dumps(ref(ids["invocations_alarm"])) in alarm[0]  # the ARN, from the alarm's name


def test_predict_url_is_an_aws_iam_function_url_with_its_output(tmp_path):
    from tests.infrastructure.conftest import synthesize

    with_url = synthesize(tmp_path, {"predict_url": "true"})
    predictor = with_url.logical_id(with_url.stack.trainer.predict_function)
    [url] = with_url.of_type("AWS::Lambda::Url").values()
    assert url["Properties"] == {"AuthType": "AWS_IAM", "TargetFunctionArn": arn(predictor)}
    assert with_url.outputs["PredictFunctionUrl"]["Value"] == {
        "Fn::GetAtt": [with_url.logical_id(with_url.stack.trainer.predict_url), "FunctionUrl"]
    }
    # No resource policy opens it: callers need lambda:InvokeFunctionUrl in their own (signed) identity policy.
    assert not with_url.of_type("AWS::Lambda::Permission").keys() - synthesized_permissions(with_url)


def synthesized_permissions(synth) -> set[str]:
    """The two EventBridge rule permissions (the launcher's and the watchdog's): the only ones the stack has."""
    return {
        key
        for key, permission in synth.of_type("AWS::Lambda::Permission").items()
        if permission["Properties"]["Principal"] == "events.amazonaws.com"
    }


def test_predict_false_leaves_the_predictor_out():
    from aws_cdk import App, Stack

    from lnn_stack.lnn_trainer import LnnTrainer
    from tests.infrastructure.conftest import SKIP_BUNDLING

    app = App(context=SKIP_BUNDLING)
    stack = Stack(app, "NoPredict")
    trainer = LnnTrainer(stack, "Trainer", predict=False)
    template = app.synth().get_stack_by_name("NoPredict").template
    handlers = sorted(
        r["Properties"]["Handler"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
    )
    assert handlers == ["lnn_core.handlers.launch", "lnn_core.handlers.train", "lnn_core.handlers.watchdog"]
    assert trainer.predict_function is None and trainer.predict_url is None
    with pytest.raises(ValueError, match="predict_url needs the PredictLambda"):
        LnnTrainer(Stack(App(context=SKIP_BUNDLING), "Bad"), "Trainer", predict=False, predict_url=True)
