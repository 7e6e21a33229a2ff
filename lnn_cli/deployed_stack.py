"""A deployed LNN stack as the commands see it: its CloudFormation outputs, the ports to its resources (the same
ports the functions use), its launcher's defaults and limits, and a run's model.npz read from its bucket."""

import functools
import io
import json
from typing import Any

import boto3
import numpy as np

from lnn_cli.cloud.stack import CLI_BOTO_CONFIG, StackOutputs, aws_errors_explained
from lnn_core.aws.ports import LambdaInvoker, Ports, S3ObjectStore, SnsNotifier
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import BOTO_CONFIG, IoCounter
from lnn_core.errors import LnnInputError, RunFailure
from lnn_core.launch.launcher import LaunchLimits
from lnn_core.ml.config import check_run_id


class DeployedStack:
    """A deployed LNN stack: its outputs and the ports to its resources."""

    def __init__(self, session: boto3.Session, stack_name: str):
        self.session = session
        self.outputs = StackOutputs.from_stack(session, stack_name)
        self.counter = IoCounter()
        # what the reads (`lnn results`, `status`, `runs`, the page) need of the stack: `ports` is built on first use
        self.table = RunTable(
            session.resource("dynamodb", config=CLI_BOTO_CONFIG).Table(self.outputs.table), self.counter
        )

    @functools.cached_property
    def ports(self) -> Ports:
        """The ports to all of the stack's resources. Built on first use: loading the SNS, Lambda and S3 clients'
        models took 0.35 s at load 6, a quarter of `lnn results` then (docs/performance.md), which uses none."""
        lambda_client = self.session.client("lambda", config=CLI_BOTO_CONFIG)
        return Ports(
            table=self.table,
            notifier=SnsNotifier(
                self.session.client("sns", config=CLI_BOTO_CONFIG), self.outputs.topic_arn, self.counter
            ),
            invoker=LambdaInvoker(lambda_client, self.outputs.trainer_function, self.counter),
            counter=self.counter,
            store=S3ObjectStore(self.session.client("s3", config=CLI_BOTO_CONFIG), self.outputs.bucket, self.counter),
            # a sweep's queued trials start as the watchdog starts them: an invoke of the launcher
            functions={"launcher": LambdaInvoker(lambda_client, self.outputs.launch_function, self.counter)},
        )

    def invoke_predictor(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A synchronous invoke (RequestResponse) of the stack's PredictLambda; its answer. (The local runtime's
        `invoke("predictor", payload)` is the same call, without AWS.)"""
        name = self.outputs.predict_function
        if not name:
            raise LnnInputError(
                f"stack {self.outputs.stack_name} has no PredictLambda (no output PredictFunctionName); "
                "redeploy it with this version of LNN, or predict on this machine without --remote"
            )
        response = self.session.client("lambda", config=BOTO_CONFIG).invoke(
            FunctionName=name, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
        )
        answer = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            detail = answer.get("errorMessage", answer) if isinstance(answer, dict) else answer
            raise LnnInputError(f"the PredictLambda {name} failed ({detail}); see its log group")
        return answer

    def run(self, run_id: str) -> dict[str, Any]:
        run = self.table.get_run(check_run_id(run_id))
        if run is None:
            raise LnnInputError(f"no run named {run_id!r} in stack {self.outputs.stack_name}; `lnn runs` lists them")
        return run

    @functools.cached_property
    def _launcher_environment(self) -> dict[str, str]:
        """The LaunchLambda's environment variables, with its own memory size as Lambda reports it to the function."""
        configuration = self.session.client("lambda", config=CLI_BOTO_CONFIG).get_function_configuration(
            FunctionName=self.outputs.launch_function
        )
        environment = dict(configuration.get("Environment", {}).get("Variables", {}))
        return {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(configuration.get("MemorySize", "")), **environment}

    def launch_defaults(self) -> dict[str, Any]:
        """The training defaults the launcher applies (its LNN_TRAINING_DEFAULTS)."""
        return json.loads(self._launcher_environment.get("LNN_TRAINING_DEFAULTS") or "{}")

    def launch_limits(self) -> LaunchLimits:
        """The limits the launcher applies; the trainer's memory from the launcher's LNN_TRAINER_MEMORY_MB, else
        from the trainer function's own configuration."""
        environment = dict(self._launcher_environment)
        if not environment.get("LNN_TRAINER_MEMORY_MB"):
            trainer = self.session.client("lambda", config=CLI_BOTO_CONFIG).get_function_configuration(
                FunctionName=self.outputs.trainer_function
            )
            environment["LNN_TRAINER_MEMORY_MB"] = str(trainer.get("MemorySize", ""))
        try:
            return LaunchLimits.from_environment(environment)
        except RuntimeError as error:
            raise LnnInputError(f"the launcher of stack {self.outputs.stack_name} is misconfigured: {error}") from None


def open_stack(session: boto3.Session, stack_name: str) -> DeployedStack:
    with aws_errors_explained(stack_name):
        return DeployedStack(session, stack_name)


def model_bytes(stack: DeployedStack, key: str) -> bytes:
    """A run's model.npz, read afresh every time (never from the store's cache: `lnn resume` and a later ending
    replace it); one line when its ending committed but the copy has not landed yet."""
    try:
        return stack.ports.store.get_bytes(key, cache=False)
    except RunFailure:
        raise LnnInputError(
            f"the run's model ({key}) is being published by the step that ended it; try again in a few seconds"
        ) from None


def model_params(stack: DeployedStack, key: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(model_bytes(stack, key)), allow_pickle=False) as model:
        return {name: model[name] for name in model.files}
