"""A moto server with the stack deployed on it by the real CDK CLI, as `lnn up` does, for end-to-end tests."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lnn_cli.cloud.deploy import deploy_to_emulator
from lnn_cli.cloud.emulator import Emulator, running_emulator
from lnn_cli.cloud.stack import StackOutputs


@contextmanager
def deployed_stack(logs: Path, stack_name: str = "LnnStack") -> Iterator[tuple[Emulator, StackOutputs]]:
    """A fresh moto server with `stack_name` deployed by cdk (its logs in `logs`), the AWS SDKs pointed at it while
    it runs; yields (the emulator, the stack's outputs)."""
    with running_emulator(logs / "emulator.log") as emulator:
        deployment = deploy_to_emulator(emulator, logs / "deploy.log", stack_name=stack_name)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in emulator.environment().items():
                patch.setenv(name, value)
            patch.delenv("AWS_PROFILE", raising=False)
            yield emulator, deployment.outputs
