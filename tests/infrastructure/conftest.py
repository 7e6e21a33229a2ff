"""Synthesize the CDK app once per session (asset bundling skipped) and share the result with every test, with what
the template tests read it by: references, policy statements, and the logical ids of the construct's resources."""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # before jsii starts node

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Template
from constructs import IConstruct

from lnn_stack.application import create_app
from lnn_stack.lnn_stack import LnnStack

PROJECT_DIR = Path(__file__).resolve().parents[2]
SKIP_BUNDLING = {"aws:cdk:bundling-stacks": []}
# The training defaults of an app given no context, in the LNN parameters.json format.
DEFAULT_TRAINING = {
    "epochs": 100,
    "learning_rate": 0.0075,
    "layers": 4,
    "neurons": {"layer1": 20, "layer2": 7, "layer3": 5, "layer4": 1},
    "activations": {"layer1": "relu", "layer2": "relu", "layer3": "relu", "layer4": "sigmoid"},
    "granularity": "layer",
    "init": "lecun",
    "seed": None,
}
# Every option set to a non-default value, to check that each one reaches the template.
CUSTOM_CONTEXT = {
    "stack_name": "LnnCustom",
    "architecture": "x86_64",
    "memory_size": "2048",
    "timeout": "600",
    "notification_email": "ops@example.com",
    "log_retention_days": "14",
    "billing_mode": "provisioned",
    "removal_policy": "destroy",
    "reserved_concurrency": "10",
    "max_running_runs": "50",
    "stall_minutes": "20",
    "watchdog_rate_minutes": "10",
    "invocation_alarm_threshold": "100",
    "epochs": "7",
    "learning_rate": "0.01",
    "neurons": "8,3",
    "activations": "tanh,softmax",
    "granularity": "epoch",
    "init": "he",
    "seed": "42",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "layer_build: builds the NumPy layer for real with pip (needs PyPI once)")


def cli_context() -> dict[str, Any]:
    """The context `cdk synth` takes from cdk.json, so that the tests synthesize what the CLI does."""
    return json.loads((PROJECT_DIR / "cdk.json").read_text())["context"]


@dataclass(frozen=True)
class Synthesized:
    stack: LnnStack
    assembly_dir: Path
    template_file: Path
    resources: dict[str, dict]  # logical id -> resource, from the template JSON
    outputs: dict[str, dict]
    template: Template

    def logical_id(self, construct: IConstruct) -> str:
        element = construct.node.default_child or construct
        return Stack.of(construct).resolve(Stack.of(construct).get_logical_id(element))

    def resource(self, construct: IConstruct) -> dict:
        return self.resources[self.logical_id(construct)]

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return {key: value for key, value in self.resources.items() if value["Type"] == resource_type}


def synthesize(outdir: Path, context: dict[str, Any]) -> Synthesized:
    app, stack = create_app({**cli_context(), **SKIP_BUNDLING, **context}, outdir=str(outdir))
    assembly = app.synth()  # also runs the cdk-nag AwsSolutions pack: a violation fails synth
    template_file = Path(assembly.directory) / stack.template_file
    template_json = json.loads(template_file.read_text())
    return Synthesized(
        stack=stack,
        assembly_dir=Path(assembly.directory),
        template_file=template_file,
        resources=template_json["Resources"],
        outputs=template_json.get("Outputs", {}),
        template=Template.from_json(template_json),
    )


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Synthesized:
    """The app with an empty context: every default."""
    return synthesize(tmp_path_factory.mktemp("cdk-default"), {})


@pytest.fixture(scope="session")
def customized(tmp_path_factory) -> Synthesized:
    """The app with every context parameter set (CUSTOM_CONTEXT)."""
    return synthesize(tmp_path_factory.mktemp("cdk-custom"), CUSTOM_CONTEXT)


@pytest.fixture(scope="session")
def trainer(synthesized):
    return synthesized.stack.trainer


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
