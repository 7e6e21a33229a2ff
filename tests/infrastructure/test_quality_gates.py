"""Quality gates on the synthesized templates: cdk-nag AwsSolutions, cfn-lint, and a deployment onto moto."""

import io
import json
import warnings
import zipfile
from pathlib import Path

import boto3
import pytest
from aws_cdk import aws_s3 as s3
from cfnlint.api import ManualArgs, lint
from moto import mock_aws

from lnn_stack.application import create_app
from tests.infrastructure.conftest import SKIP_BUNDLING, cli_context

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's defaults
# moto 5.2.5's CloudFormation skips these types with a warning (they are not created, but the stack completes).
# If moto learns one, or the stack gains another, the moto test fails and this list is updated on purpose.
MOTO_SKIPPED_TYPES = {
    "AWS::S3::BucketPolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::SNS::Subscription",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::CloudWatch::Alarm",
    "AWS::SQS::QueuePolicy",
}
CONTRACT_OUTPUTS = {
    "BucketName",
    "TableName",
    "TopicArn",
    "TrainerFunctionName",
    "LaunchFunctionName",
    "WatchdogFunctionName",
    "PredictFunctionName",
    "DashboardName",
}


@pytest.fixture(params=["synthesized", "customized"])
def any_synth(request):
    return request.getfixturevalue(request.param)


def test_cdk_nag_aws_solutions_and_serverless_pass_with_specific_acknowledgments(any_synth):
    # create_app registers both packs with Validations: the fixture's synth ran them, and would have raised on a
    # violation (next test). Each acknowledgment names one rule on one resource, with its own reason.
    reports = json.loads((any_synth.assembly_dir / "validation-report.json").read_text())["pluginReports"]
    assert [(r["pluginName"], r["conclusion"], r["violations"]) for r in reports] == [
        ("AwsSolutions", "success", []),
        ("Serverless", "success", []),
    ]
    stack, bucket = any_synth.stack.stack_name, any_synth.logical_id(any_synth.stack.trainer.bucket)
    trainer = f"{stack}/LnnTrainer"

    def iam5(pattern):
        return f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{pattern}]"

    def on_policy(rule, function):
        return (rule, [f"{trainer}/{function}Role/DefaultPolicy/Resource"], f"{trainer}/{function}Role/DefaultPolicy")

    def on_function(rule, function):
        return (rule, [f"{trainer}/{function}/Resource"], f"{trainer}/{function}/Resource")

    functions = ("TrainerLambda", "LaunchLambda", "WatchdogLambda", "PredictLambda")
    expected = {
        "AwsSolutions": [
            ("AwsSolutions-S1", [f"{trainer}/Bucket/Resource"], f"{trainer}/Bucket"),
            on_policy(iam5("runs/*"), "TrainerLambda"),
            on_policy(iam5("runs/*/state/*"), "TrainerLambda"),
            on_policy(iam5("runs/*/model.npz"), "TrainerLambda"),
            on_policy(iam5("runs/*"), "LaunchLambda"),
            on_policy(iam5("runs/*/model.npz"), "PredictLambda"),  # GetObject of a model: nothing else
            on_policy(iam5("runs/*/state/staged-model-e*.npz"), "WatchdogLambda"),  # the copy of a staged model ...
            on_policy(iam5("runs/*/model.npz"), "WatchdogLambda"),  # ... to where it is served
            # the sweep controller: a sweep's record, its data and a trial's copy of it, a trial's start mark, the
            # sweep's message claim, its halving rungs' arrivals, the marks of the active sweeps
            *(
                on_policy(iam5(pattern), "WatchdogLambda")
                for pattern in (
                    "runs/*/sweep.json",
                    "runs/*/data-*.npz",
                    "runs/*-t*/data.npz",
                    "runs/*/trial.json",
                    "runs/*/sweep-message.json",
                    "runs/*/halving.json",
                    "sweeps/active/*",
                )
            ),
            ("AwsSolutions-SQS3", [f"{trainer}/DeadLetterQueue/Resource"], f"{trainer}/DeadLetterQueue"),
        ],
        "Serverless": [
            *(on_function("Serverless-LambdaTracing", function) for function in functions),
            *(on_function("Serverless-LambdaDLQ", function) for function in functions),
            ("Serverless-SQSRedrivePolicy", [f"{trainer}/DeadLetterQueue/Resource"], f"{trainer}/DeadLetterQueue"),
        ],
    }
    for report in reports:
        suppressed = sorted(
            (v["ruleName"], [c["constructPath"] for c in v["violatingConstructs"]], v["acknowledgedAt"])
            for v in report["suppressedViolations"]
        )
        assert suppressed == sorted(expected[report["pluginName"]])
        reasons = [violation["reason"] for violation in report["suppressedViolations"]]
        assert all(len(reason) > 60 for reason in reasons)
        assert len(set(reasons)) == len(reasons) or report["pluginName"] == "AwsSolutions"


def test_synth_fails_on_a_cdk_nag_violation(tmp_path):
    app, stack = create_app({**cli_context(), **SKIP_BUNDLING}, outdir=str(tmp_path))
    s3.Bucket(stack, "UnloggedBucket")  # breaks AwsSolutions-S1 and S10
    with pytest.raises(
        RuntimeError, match=r"ValidationFailed: .*\(AwsSolutions\)\n   LnnStack/UnloggedBucket/Resource"
    ):
        app.synth()


def test_cfn_lint_reports_no_errors(any_synth):
    matches = lint(any_synth.template_file.read_text(), config=ManualArgs(regions=[REGION]))
    errors = [f"{match.rule.id}: {match.message}" for match in matches if match.rule.id.startswith("E")]
    assert errors == []


def test_cfn_lint_does_find_errors(synthesized):
    """The gate above is live: a broken template is reported."""
    template = json.loads(synthesized.template_file.read_text())
    trainer = synthesized.logical_id(synthesized.stack.trainer.trainer_function)
    template["Resources"][trainer]["Properties"]["Runtime"] = "python2.0"
    assert [
        match
        for match in lint(json.dumps(template), config=ManualArgs(regions=[REGION]))
        if match.rule.id.startswith("E")
    ]


def publish_assets(assembly_dir: Path, stack_name: str) -> None:
    """What `cdk bootstrap` and `cdk deploy` do before CloudFormation: the bootstrap version and the asset files."""
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String"
    )
    s3_client = boto3.client("s3", region_name=REGION)
    manifest = json.loads((assembly_dir / f"{stack_name}.assets.json").read_text())
    for asset in manifest["files"].values():
        source = assembly_dir / asset["source"]["path"]
        if asset["source"]["packaging"] == "zip":
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                for path in sorted(source.rglob("*")):
                    archive.write(path, path.relative_to(source))
            body = buffer.getvalue()
        else:
            body = source.read_bytes()
        for destination in asset["destinations"].values():
            bucket = destination["bucketName"].replace("${AWS::AccountId}", ACCOUNT).replace("${AWS::Region}", REGION)
            if bucket not in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]:
                s3_client.create_bucket(Bucket=bucket)
            s3_client.put_object(Bucket=bucket, Key=destination["objectKey"], Body=body)


def test_the_template_deploys_onto_moto(any_synth, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    stack_name = any_synth.stack.stack_name
    with mock_aws(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        publish_assets(any_synth.assembly_dir, stack_name)
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        cloudformation.create_stack(
            StackName=stack_name, TemplateBody=any_synth.template_file.read_text(), Capabilities=["CAPABILITY_IAM"]
        )
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        created = {
            resource["LogicalResourceId"]: resource["ResourceStatus"]
            for resource in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
            if "LogicalResourceId" in resource  # moto lists the skipped ones without an id
        }
        trainer_configuration = boto3.client("lambda", region_name=REGION).get_function_configuration(
            FunctionName={o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["TrainerFunctionName"]
        )

    assert stack["StackStatus"] == "CREATE_COMPLETE"
    template_types = {resource["Type"] for resource in any_synth.resources.values()}
    skipped = {str(w.message).split()[3] for w in caught if "not supported by moto" in str(w.message)}
    assert skipped == MOTO_SKIPPED_TYPES & template_types
    expected = {key for key, resource in any_synth.resources.items() if resource["Type"] not in skipped}
    assert created == dict.fromkeys(expected, "CREATE_COMPLETE")
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}
    assert set(outputs) == CONTRACT_OUTPUTS
    assert trainer_configuration["Handler"] == "lnn_core.handlers.train"
    assert trainer_configuration["Environment"]["Variables"]["LNN_TABLE"] == outputs["TableName"]
    assert trainer_configuration["Environment"]["Variables"]["LNN_BUCKET"] == outputs["BucketName"]
