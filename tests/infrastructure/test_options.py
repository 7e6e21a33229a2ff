"""Each context parameter reaches the template (the app synthesized with CUSTOM_CONTEXT), and the construct's props."""

import json

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match

from lnn_stack.lnn_trainer import LnnTrainer
from tests.infrastructure.conftest import SKIP_BUNDLING


def functions(customized) -> dict[str, dict]:
    trainer = customized.stack.trainer
    return {
        name: customized.resource(function)["Properties"]
        for name, function in [
            ("trainer", trainer.trainer_function),
            ("launcher", trainer.launch_function),
            ("watchdog", trainer.watchdog_function),
        ]
    }


def test_stack_name(customized):
    assert customized.stack.stack_name == "LnnCustom"
    assert customized.template_file.name == "LnnCustom.template.json"


def test_architecture_memory_timeout_and_reserved_concurrency(customized):
    props = functions(customized)
    for function in props.values():
        assert function["Architectures"] == ["x86_64"]
    assert (props["trainer"]["MemorySize"], props["trainer"]["Timeout"]) == (2048, 600)
    assert (props["launcher"]["MemorySize"], props["launcher"]["Timeout"]) == (2048, 600)
    assert (props["watchdog"]["MemorySize"], props["watchdog"]["Timeout"]) == (256, 60)
    assert props["trainer"]["ReservedConcurrentExecutions"] == 10
    assert props["launcher"]["ReservedConcurrentExecutions"] == 2
    assert "ReservedConcurrentExecutions" not in props["watchdog"]
    # The launcher refuses a run that cannot fit the trainer's memory; the watchdog judges stalls by the timeout.
    assert props["launcher"]["Environment"]["Variables"]["LNN_TRAINER_MEMORY_MB"] == "2048"
    assert props["launcher"]["Environment"]["Variables"]["LNN_TRAINER_RESERVED_CONCURRENCY"] == "10"
    assert props["watchdog"]["Environment"]["Variables"]["LNN_TRAINER_TIMEOUT_SECONDS"] == "600"


def test_max_running_runs(customized):
    assert functions(customized)["launcher"]["Environment"]["Variables"]["LNN_MAX_RUNNING_RUNS"] == "50"


def test_reserved_concurrency_none_lifts_both_reservations():
    app = App(context=SKIP_BUNDLING)
    stack = Stack(app, "Unreserved")
    LnnTrainer(stack, "Trainer", reserved_concurrency=None, launcher_reserved_concurrency=None)
    template = app.synth().get_stack_by_name("Unreserved").template
    functions_ = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions_) == 4  # trainer, launcher, watchdog, predictor
    assert not [f for f in functions_ if "ReservedConcurrentExecutions" in f["Properties"]]
    launcher = next(f for f in functions_ if f["Properties"]["Handler"] == "lnn_core.handlers.launch")
    assert (
        "LNN_TRAINER_RESERVED_CONCURRENCY" not in launcher["Properties"]["Environment"]["Variables"]
    )  # no cap on workers


def test_the_layer_is_built_for_the_functions_architecture(customized, synthesized):
    layer = customized.resource(customized.stack.trainer.layer.layer_version)["Properties"]
    assert layer["CompatibleArchitectures"] == ["x86_64"]
    assert layer["Description"].endswith("manylinux_2_28_x86_64")
    default_layer = synthesized.resource(synthesized.stack.trainer.layer.layer_version)["Properties"]
    assert layer["Content"]["S3Key"] != default_layer["Content"]["S3Key"]  # the asset hash covers the platform


def test_log_retention(customized):
    for log_group in customized.of_type("AWS::Logs::LogGroup").values():
        assert log_group["Properties"] == {"RetentionInDays": 14}


def test_provisioned_billing_and_destroy_removal_policy(customized):
    trainer = customized.stack.trainer
    table = customized.resource(trainer.table)
    assert "BillingMode" not in table["Properties"]  # CloudFormation's default: PROVISIONED
    assert table["Properties"]["ProvisionedThroughput"] == {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    assert table["DeletionPolicy"] == "Delete"
    assert customized.resource(trainer.bucket)["DeletionPolicy"] == "Delete"


def test_email_subscription(customized):
    trainer = customized.stack.trainer
    dlq = customized.logical_id(trainer.dead_letter_queue)
    customized.template.has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Protocol": "email",
            "Endpoint": "ops@example.com",
            "TopicArn": {"Ref": customized.logical_id(trainer.topic)},
            # A message SNS cannot deliver to the address waits in the DLQ, whose alarm fires.
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]}},
        },
    )
    customized.template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "sqs:SendMessage",
                                "Effect": "Allow",
                                "Principal": {"Service": "sns.amazonaws.com"},
                                "Condition": {
                                    "ArnEquals": {"aws:SourceArn": {"Ref": customized.logical_id(trainer.topic)}}
                                },
                            }
                        )
                    ]
                )
            },
        },
    )


def test_watchdog_stall_time_and_rate(customized):
    trainer = customized.stack.trainer
    assert functions(customized)["watchdog"]["Environment"]["Variables"]["LNN_STALL_SECONDS"] == "1200"
    assert customized.resource(trainer.watchdog_rule)["Properties"]["ScheduleExpression"] == "rate(10 minutes)"


def test_alarm_threshold(customized):
    assert customized.resource(customized.stack.trainer.invocations_alarm)["Properties"]["Threshold"] == 100


def test_training_defaults(customized):
    defaults = functions(customized)["launcher"]["Environment"]["Variables"]["LNN_TRAINING_DEFAULTS"]
    assert json.loads(defaults) == {
        "epochs": 7,
        "learning_rate": 0.01,
        "layers": 2,
        "neurons": {"layer1": 8, "layer2": 3},
        "activations": {"layer1": "tanh", "layer2": "softmax"},
        "granularity": "epoch",
        "init": "he",
        "seed": 42,
    }


def test_the_construct_uses_existing_resources_instead_of_creating_them():
    app = App(context=SKIP_BUNDLING)
    stack = Stack(app, "Reuse")
    bucket = s3.Bucket(stack, "MyBucket", enforce_ssl=True)
    table = dynamodb.TableV2(
        stack,
        "MyTable",
        partition_key=dynamodb.Attribute(name="run_id", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="epoch", type=dynamodb.AttributeType.NUMBER),
    )
    topic = sns.Topic(stack, "MyTopic")
    trainer = LnnTrainer(
        stack, "Trainer", existing_bucket_obj=bucket, existing_table_obj=table, existing_topic_obj=topic
    )
    assert (trainer.bucket, trainer.table, trainer.topic) == (bucket, table, topic)
    assert trainer.node.try_find_child("Bucket") is None
    assert trainer.node.try_find_child("Table") is None
    assert trainer.node.try_find_child("Topic") is None
    # The bucket, created in this app, is switched to EventBridge too.
    template = app.synth().get_stack_by_name("Reuse").template
    assert template["Resources"][stack.resolve(stack.get_logical_id(bucket.node.default_child))]["Properties"][
        "NotificationConfiguration"
    ] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}


def test_an_existing_resource_and_props_for_a_new_one_are_rejected():
    stack = Stack(App(context=SKIP_BUNDLING), "Both")
    with pytest.raises(ValueError, match="not both"):
        LnnTrainer(stack, "Trainer", existing_topic_obj=sns.Topic(stack, "MyTopic"), topic_props={"display_name": "x"})
