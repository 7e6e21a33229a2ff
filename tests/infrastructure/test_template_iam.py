"""The synthesized template's permissions with default settings: each function's role and its exact statements, the
trainer's separate self-invoke policy, no wildcard action, and the resource policies (TLS only; the topic's
publishers)."""

import json

from aws_cdk.assertions import Match

from tests.infrastructure.conftest import arn, expected, ref, statements


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
