"""The context `lnn local` and `lnn up` deploy with: cdk.json's, with `-c KEY=VALUE` over it, as `cdk deploy -c`
takes it.

Validated by the stack's own settings code (lnn_stack/settings/from_context.py) before anything starts, so a bad
value is one line; the pairs then go to `cdk synth`, and the settings give the launcher's limits and training
defaults that `lnn local` checks a run against.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lnn_cli.cloud.deploy import CDK_ENVIRONMENT, PROJECT_DIR, cdk_json_context
from lnn_core.errors import LnnInputError
from lnn_core.launch.launcher import LaunchLimits


@dataclass(frozen=True)
class DeployContext:
    pairs: dict[str, str]  # the -c pairs, handed to `cdk synth` as they were given
    limits: LaunchLimits  # what the deployed launcher will admit
    training_defaults: dict[str, Any]  # its LNN_TRAINING_DEFAULTS


def parse_pairs(pairs: list[str], *, command: str) -> dict[str, str]:
    """['memory_size=1769'] -> {'memory_size': '1769'}; a pair without '=' or a key is an `LnnInputError`."""
    parsed = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise LnnInputError(f"-c {pair!r} is not KEY=VALUE; e.g. {command} -c memory_size=1769")
        parsed[key.strip()] = value
    return parsed


def deploy_context(pairs: list[str], *, command: str, project_dir: Path = PROJECT_DIR) -> DeployContext:
    """The settings of the stack `command` deploys, validated as `cdk synth` validates them."""
    given = parse_pairs(pairs, command=command)
    if "stack_name" in given:  # the stack's name comes from --stack, which the deploy and the commands look up
        raise LnnInputError(
            f"-c stack_name={given['stack_name']} is not for {command}: name the stack with "
            f"`{command} --stack {given['stack_name']}`"
        )
    for key, value in CDK_ENVIRONMENT.items():  # jsii's node would print its version banner on import
        os.environ.setdefault(key, value)
    from lnn_stack.settings.context import ContextError  # the CDK is imported only to deploy
    from lnn_stack.settings.from_context import settings_from_context

    try:
        deployment, training = settings_from_context({**cdk_json_context(project_dir), **given})
    except ContextError as error:  # its fix reads `cdk synth -c KEY=VALUE`: the same pair works here
        raise LnnInputError(
            str(error).replace("cdk synth -c", f"{command} -c").replace("cdk deploy -c", f"{command} -c")
        ) from None
    limits = LaunchLimits(
        max_running_runs=deployment.max_running_runs,
        trainer_memory_mb=deployment.memory_size,
        launcher_memory_mb=deployment.memory_size,
        trainer_concurrency=deployment.reserved_concurrency,
    )
    return DeployContext(given, limits, training.to_parameters())
