"""The deployed stack as the `lnn` command sees it: its CloudFormation outputs (the contract in docs/architecture.md)."""

from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

from lnn_core.errors import LnnInputError

DEFAULT_STACK = "LnnStack"
OUTPUT_KEYS = {
    "BucketName": "bucket",
    "TableName": "table",
    "TopicArn": "topic_arn",
    "TrainerFunctionName": "trainer_function",
    "LaunchFunctionName": "launch_function",
    "WatchdogFunctionName": "watchdog_function",
}
# Outputs a stack may lack: an older stack, the construct with predict=False, predict_url off.
OPTIONAL_OUTPUT_KEYS = {
    "PredictFunctionName": "predict_function",
    "PredictFunctionUrl": "predict_url",
    "DashboardName": "dashboard",
}
CREDENTIAL_ERRORS = {
    "InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException",
    "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException",
}


@dataclass(frozen=True)
class StackOutputs:
    stack_name: str
    bucket: str
    table: str
    topic_arn: str
    trainer_function: str
    launch_function: str
    watchdog_function: str
    predict_function: str | None = None
    predict_url: str | None = None
    dashboard: str | None = None

    @classmethod
    def from_stack(cls, session: boto3.Session, stack_name: str) -> "StackOutputs":
        """Read the outputs; a missing stack, credentials or output is an `LnnInputError` that says what to do."""
        with aws_errors_explained(stack_name):
            stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
        outputs = {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs") or []}
        missing = [key for key in OUTPUT_KEYS if key not in outputs]
        if missing:
            raise LnnInputError(
                f"stack {stack_name} lacks the output {missing[0]}; is it an LNN stack? Deploy LNN with `cdk deploy`"
            )
        return cls(stack_name=stack_name, **{field: outputs[key] for key, field in OUTPUT_KEYS.items()},
                   **{field: outputs[key] for key, field in OPTIONAL_OUTPUT_KEYS.items() if key in outputs})


@contextmanager
def aws_errors_explained(stack_name: str):
    """Turn the AWS errors a person can fix (no credentials, no region, no such stack) into one-line `LnnInputError`s."""
    try:
        yield
    except NoCredentialsError:
        raise LnnInputError(
            "no AWS credentials were found; configure them with `aws configure`, AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or use `lnn local`, which needs none)"
        ) from None
    except NoRegionError:
        raise LnnInputError("no AWS region is set; set AWS_REGION or run `aws configure`") from None
    except ClientError as error:
        code, message = error.response["Error"]["Code"], error.response["Error"].get("Message", "")
        if code == "ValidationError" and "does not exist" in message:
            raise LnnInputError(
                f"stack {stack_name} was not found; deploy it with `cdk deploy` or name yours with --stack NAME"
            ) from None
        if code in CREDENTIAL_ERRORS:
            raise LnnInputError(f"AWS refused the credentials ({code}: {message}); refresh or fix them") from None
        raise
