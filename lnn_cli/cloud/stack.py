"""The deployed stack as the `lnn` command sees it: its CloudFormation outputs (the contract in
docs/architecture.md)."""

import os
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSOError,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

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
EXPIRED_CREDENTIAL_ERRORS = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
INVALID_CREDENTIAL_ERRORS = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "InvalidAccessKeyId",
    "AuthFailure",
}
DENIED_ERRORS = {"AccessDenied", "AccessDeniedException"}
# The CLI's clients: a dead endpoint (AWS_ENDPOINT_URL left set after `lnn down`) fails within a few seconds (a
# refused connection is retried twice, at most 1 + 2 s of back-off), a silent one within 3 x (2 + 30) s.
CLI_BOTO_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=30)


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
            stacks = session.client("cloudformation", config=CLI_BOTO_CONFIG).describe_stacks(StackName=stack_name)[
                "Stacks"
            ]
        outputs = {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs") or []}
        missing = [key for key in OUTPUT_KEYS if key not in outputs]
        if missing:
            raise LnnInputError(
                f"stack {stack_name} lacks the output {missing[0]}; is it an LNN stack? Deploy LNN with `cdk deploy`"
            )
        return cls(
            stack_name=stack_name,
            **{field: outputs[key] for key, field in OUTPUT_KEYS.items()},
            **{field: outputs[key] for key, field in OPTIONAL_OUTPUT_KEYS.items() if key in outputs},
        )


@contextmanager
def aws_errors_explained(stack_name: str):
    """Turn the AWS errors a person can fix (an endpoint that does not answer, no or bad credentials, no region, no
    such stack) into one-line `LnnInputError`s."""
    try:
        yield
    except (ConnectionError, ConnectionClosedError, ReadTimeoutError) as error:
        raise endpoint_error(error) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise LnnInputError(
            "no AWS credentials were found; configure them with `aws configure`, AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or use `lnn up` or `lnn local`, which need none)"
        ) from None
    except ProfileNotFound as error:
        raise LnnInputError(
            f"{error} (AWS_PROFILE={os.environ.get('AWS_PROFILE', '')}); add it with "
            "`aws configure --profile NAME`, or unset AWS_PROFILE"
        ) from None
    except (SSOError, SSOTokenLoadError, UnauthorizedSSOTokenError, TokenRetrievalError) as error:
        raise LnnInputError(
            f"the AWS SSO session is missing or has expired ({error}); sign in with `aws sso login`"
        ) from None
    except CredentialRetrievalError as error:
        raise LnnInputError(
            f"the AWS credentials could not be retrieved ({error}); fix the profile's credential "
            "source or use `aws configure`"
        ) from None
    except NoRegionError:
        raise LnnInputError("no AWS region is set; set AWS_REGION or run `aws configure`") from None
    except ClientError as error:
        code, message = error.response["Error"]["Code"], error.response["Error"].get("Message", "")
        if code == "ValidationError" and "does not exist" in message:
            endpoint = configured_endpoint(service="cloudformation")
            where = f" at {endpoint[1]} ({endpoint[0]})" if endpoint else ""
            raise LnnInputError(
                f"stack {stack_name} was not found{where}; deploy it with `cdk deploy` (or `lnn up`), or name yours "
                "with --stack NAME"
            ) from None
        if code in EXPIRED_CREDENTIAL_ERRORS:
            raise LnnInputError(
                f"the AWS credentials have expired ({code}: {message}); refresh them "
                "(`aws sso login`, or new keys with `aws configure`)"
            ) from None
        if code in INVALID_CREDENTIAL_ERRORS:
            raise LnnInputError(
                f"AWS refused the credentials ({code}: {message}); fix them with `aws configure` or AWS_PROFILE"
            ) from None
        if code in DENIED_ERRORS:
            raise LnnInputError(
                f"the AWS credentials may not do this ({code}: {message}); use credentials allowed "
                f"to use stack {stack_name}"
            ) from None
        raise


def configured_endpoint(url: str = "", *, service: str = "") -> tuple[str, str] | None:
    """The environment variable that points the SDK at a custom endpoint, and its value: the one `url` was sent to
    (AWS_ENDPOINT_URL_<SERVICE> or AWS_ENDPOINT_URL), or `service`'s; None when the SDK talks to AWS."""
    variables = {
        name: value.rstrip("/") for name, value in os.environ.items() if name.startswith("AWS_ENDPOINT_URL") and value
    }
    if url:
        matching = [name for name, value in variables.items() if url.startswith(value)]
        name = max(matching, key=len, default=None)  # a service's own variable before AWS_ENDPOINT_URL
    else:
        name = next(
            (name for name in (f"AWS_ENDPOINT_URL_{service.upper()}", "AWS_ENDPOINT_URL") if name in variables), None
        )
    return (name, variables[name]) if name else None


def endpoint_error(error: Exception) -> LnnInputError:
    """An endpoint that does not answer, named with the variable that set it and the fix."""
    url = getattr(error, "kwargs", {}).get("endpoint_url") or ""
    configured = configured_endpoint(url)
    silent = isinstance(error, ReadTimeoutError)
    if configured is None:
        host = url.split("://", 1)[-1].split("/", 1)[0] or "AWS"
        what = (
            f"{host} did not answer within {CLI_BOTO_CONFIG.read_timeout} s" if silent else f"nothing answers at {host}"
        )
        return LnnInputError(f"{what}; check the network connection and the region (AWS_REGION)")
    name, value = configured
    if silent:
        return LnnInputError(
            f"{value} ({name}) accepted the connection but did not answer within "
            f"{CLI_BOTO_CONFIG.read_timeout} s; restart it with `lnn down` and `lnn up`, or unset {name} to use AWS"
        )
    return LnnInputError(
        f"nothing answers at {value} ({name}): run `lnn up`, or unset {name} to use AWS" + _stack_up_elsewhere(value)
    )


def _stack_up_elsewhere(endpoint: str) -> str:
    """A local stack of `lnn up` that is up at another endpoint, as the line to paste; or nothing."""
    from lnn_cli.cloud.up.registry import stacks_up  # only on this error: the registry of `lnn up`

    others = [state["endpoint"] for state in stacks_up() if state.get("endpoint") != endpoint]
    return f" (a local stack is up at {others[0]}: export AWS_ENDPOINT_URL={others[0]})" if others else ""
