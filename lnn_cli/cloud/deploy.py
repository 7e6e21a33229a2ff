"""Deploy the LNN stack onto an emulator: the real `cdk bootstrap` and `cdk deploy`, or `create_stack` without the
CDK CLI.

Two gaps of moto 5.2.5 are worked around here, on the emulator only:
- a stack created through a change set (the CDK CLI's default) has no Outputs, so we deploy with `--method=direct`;
- its CloudFormation skips `AWS::Lambda::EventInvokeConfig`, so the template's configs (retry attempts, event age,
  on-failure destination) are applied through the Lambda API afterwards, as CloudFormation would have.
"""

import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

from lnn_cli.cloud.emulator import ACCOUNT_ID, REGION, Emulator
from lnn_cli.cloud.stack import StackOutputs

PROJECT_DIR = Path(__file__).resolve().parents[2]
ASSEMBLY_DIR = "cdk.out"
BOOTSTRAP_QUALIFIER = "hnb659fds"  # the CDK's default
BOOTSTRAP_VERSION = "30"  # what the fallback path records in SSM, as `cdk bootstrap` would
CDK_ENVIRONMENT = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_VERSION_CHECK": "1"}


class DeployError(RuntimeError):
    """The stack could not be synthesized or deployed; the message names the log to read."""


@dataclass
class Deployment:
    outputs: StackOutputs
    method: str  # "cdk deploy" or "create_stack"
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall time
    notes: list[str] = field(default_factory=list)


def cdk_cli(project_dir: Path = PROJECT_DIR) -> Path | None:
    """The project's pinned CDK CLI, when it is installed and node can run it."""
    cli = project_dir / "node_modules" / ".bin" / "cdk"
    return cli if cli.exists() and shutil.which("node") else None


def deploy_to_emulator(
    emulator: Emulator,
    log_path: Path,
    *,
    stack_name: str,
    project_dir: Path = PROJECT_DIR,
    context: dict[str, str] | None = None,
) -> Deployment:
    """Synthesize the app (with `context`: `-c` pairs over cdk.json's) and deploy it to a fresh emulator;
    `cdk synth` runs alongside `cdk bootstrap`."""
    session = emulator.session()
    cli = cdk_cli(project_dir)
    seconds: dict[str, float] = {}
    with assembly_lock(project_dir), open(log_path, "ab") as log:
        started = time.monotonic()
        synth = _start_synth(cli, project_dir, log, {**(context or {}), "stack_name": stack_name})  # --stack names it
        if cli:
            try:
                with tempfile.TemporaryDirectory() as elsewhere:  # away from cdk.json: bootstrap would lock cdk.out
                    _run_cdk(
                        cli, ["bootstrap", f"aws://{ACCOUNT_ID}/{REGION}"], emulator, Path(elsewhere), log, log_path
                    )
            except BaseException:  # no synth may outlive the lock on cdk.out it writes under
                synth.kill()
                synth.wait()
                raise
            seconds["bootstrap"] = round(time.monotonic() - started, 2)
        if synth.wait() != 0:
            raise DeployError(f"synthesizing the CDK app failed; see {log_path}")
        seconds["synth"] = round(time.monotonic() - started, 2)
        started = time.monotonic()
        assembly = project_dir / ASSEMBLY_DIR
        if cli:
            _run_cdk(
                cli,
                [
                    "deploy",
                    stack_name,
                    "--app",
                    str(assembly),
                    "--require-approval",
                    "never",
                    "--method=direct",
                    "--progress",
                    "events",
                ],
                emulator,
                project_dir,
                log,
                log_path,
            )
            method, notes = "cdk deploy", []
        else:
            create_stack_from_assembly(session, assembly, stack_name)
            method = "create_stack"
            notes = [
                "the CDK CLI is not installed (node_modules/.bin/cdk); deployed the synthesized template with "
                "create_stack"
            ]
        seconds["deploy"] = round(time.monotonic() - started, 2)
    applied = apply_event_invoke_configs(session, assembly, stack_name)
    if applied:
        notes.append(
            f"applied {applied} EventInvokeConfig(s) through the Lambda API (moto's CloudFormation skips them)"
        )
    return Deployment(StackOutputs.from_stack(session, stack_name), method, seconds, notes)


@contextmanager
def assembly_lock(project_dir: Path):
    """One synth-and-deploy at a time per checkout: they share cdk.out (and its cached NumPy layer bundle)."""
    assembly = project_dir / ASSEMBLY_DIR
    assembly.mkdir(exist_ok=True)
    with open(assembly / ".lnn.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def synthesize(project_dir: Path = PROJECT_DIR, log_path: Path | None = None) -> Path:
    """Synthesize the app into cdk.out (under the lock) and return the assembly's directory."""
    with assembly_lock(project_dir), open(log_path or os.devnull, "ab") as log:
        if _start_synth(cdk_cli(project_dir), project_dir, log).wait() != 0:
            raise DeployError(f"synthesizing the CDK app failed; see {log_path}")
    return project_dir / ASSEMBLY_DIR


def cdk_json_context(project_dir: Path) -> dict:
    """cdk.json's context (none when the file is missing or unreadable: synth says why)."""
    try:
        context = json.loads((project_dir / "cdk.json").read_text()).get("context") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return context if isinstance(context, dict) else {}


def _start_synth(cli: Path | None, project_dir: Path, log, context: dict[str, str] | None = None) -> subprocess.Popen:
    if not (project_dir / "cdk.json").exists():
        raise DeployError(f"{project_dir / 'cdk.json'} is missing: the CDK app is not there to deploy")
    environment = {**os.environ, **CDK_ENVIRONMENT}
    if cli:
        pairs = [argument for key, value in (context or {}).items() for argument in ("-c", f"{key}={value}")]
        command = [str(cli), "synth", "--quiet", "--output", ASSEMBLY_DIR, *pairs]
    else:  # the app synthesizes itself: CDK_OUTDIR and CDK_CONTEXT_JSON are what the CLI would set
        command, environment["CDK_OUTDIR"] = [sys.executable, "app.py"], str(project_dir / ASSEMBLY_DIR)
        environment["CDK_CONTEXT_JSON"] = json.dumps({**cdk_json_context(project_dir), **(context or {})})
    shown = (
        ["cdk", *command[1:]] if cli else ["python", "app.py", f"(CDK_CONTEXT_JSON={environment['CDK_CONTEXT_JSON']})"]
    )
    log.write(f"\n$ {' '.join(shown)}\n".encode())
    log.flush()
    return subprocess.Popen(command, cwd=project_dir, stdout=log, stderr=log, env=environment)


def _run_cdk(cli: Path, arguments: list[str], emulator: Emulator, directory: Path, log, log_path: Path) -> None:
    log.write(f"\n$ cdk {' '.join(arguments)}\n".encode())
    log.flush()
    environment = {**os.environ, **CDK_ENVIRONMENT, **emulator.environment()}
    environment.pop("AWS_PROFILE", None)  # a profile would override the fake credentials
    result = subprocess.run([str(cli), *arguments], cwd=directory, stdout=log, stderr=log, env=environment)
    if result.returncode != 0:
        raise DeployError(f"`cdk {arguments[0]}` failed against the emulator; see {log_path}")


def _assembly_stack(assembly: Path, stack_name: str) -> tuple[dict, dict]:
    """The stack's template and its asset manifest from a cloud assembly."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    for artifact in manifest["artifacts"].values():
        properties = artifact.get("properties", {})
        if artifact["type"] == "aws:cloudformation:stack" and properties.get("stackName", stack_name) == stack_name:
            template = json.loads((assembly / properties["templateFile"]).read_text())
            assets_file = assembly / f"{Path(properties['templateFile']).stem.removesuffix('.template')}.assets.json"
            return template, json.loads(assets_file.read_text()) if assets_file.exists() else {"files": {}}
    raise DeployError(f"the CDK app has no stack named {stack_name}")


def create_stack_from_assembly(session: boto3.Session, assembly: Path, stack_name: str) -> None:
    """What `cdk bootstrap` + `cdk deploy` do, reduced to API calls: upload the file assets, then create the stack.

    Used when the CDK CLI is missing, and by in-process tests under `moto.mock_aws` (no server, no CLI).
    """
    template, assets = _assembly_stack(assembly, stack_name)
    account = session.client("sts").get_caller_identity()["Account"]
    region = session.region_name
    s3 = session.client("s3")
    bucket = f"cdk-{BOOTSTRAP_QUALIFIER}-assets-{account}-{region}"
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    for asset in assets["files"].values():
        source = assembly / asset["source"]["path"]
        body = (
            _zip_directory(source)
            if asset["source"].get("packaging") == "zip" and source.is_dir()
            else source.read_bytes()
        )
        for destination in asset["destinations"].values():
            s3.put_object(Bucket=bucket, Key=destination["objectKey"], Body=body)
    session.client("ssm").put_parameter(
        Name=f"/cdk-bootstrap/{BOOTSTRAP_QUALIFIER}/version", Value=BOOTSTRAP_VERSION, Type="String", Overwrite=True
    )
    cloudformation = session.client("cloudformation")
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    status = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    if status != "CREATE_COMPLETE":
        raise DeployError(f"create_stack of {stack_name} ended in {status}")


def _zip_directory(directory: Path) -> bytes:
    """A directory as zip bytes, stored (not deflated): Lambda accepts it and it is much faster to make."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def apply_event_invoke_configs(session: boto3.Session, assembly: Path, stack_name: str) -> int:
    """Apply the template's `AWS::Lambda::EventInvokeConfig`s that the emulator's CloudFormation did not create."""
    template, _ = _assembly_stack(assembly, stack_name)
    cloudformation, lambda_ = session.client("cloudformation"), session.client("lambda")
    physical = {
        resource["LogicalResourceId"]: (resource["PhysicalResourceId"], resource["ResourceType"])
        for resource in cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
        if resource.get("LogicalResourceId")
    }
    applied = 0
    for resource in template.get("Resources", {}).values():
        if resource["Type"] != "AWS::Lambda::EventInvokeConfig":
            continue
        properties = resource["Properties"]
        function = _resolve(properties["FunctionName"], physical, session)
        try:
            lambda_.get_function_event_invoke_config(FunctionName=function)
            continue  # the emulator created it after all
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
        request = {"FunctionName": function}
        for name in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if name in properties:
                request[name] = properties[name]
        destinations = {
            outcome: {"Destination": _resolve(target["Destination"], physical, session)}
            for outcome, target in properties.get("DestinationConfig", {}).items()
        }
        if destinations:
            request["DestinationConfig"] = destinations
        lambda_.put_function_event_invoke_config(**request)
        applied += 1
    return applied


def _resolve(value, physical: dict[str, tuple[str, str]], session: boto3.Session) -> str:
    """A template value (a string, Ref or Fn::GetAtt ... Arn) as the deployed resource's name or ARN."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return physical[value["Ref"]][0]
    logical, attribute = value["Fn::GetAtt"]
    name, kind = physical[logical]
    if attribute != "Arn":
        raise DeployError(f"cannot resolve Fn::GetAtt {logical}.{attribute} locally")
    if kind == "AWS::SNS::Topic":
        return name  # a topic's physical id is its ARN
    if kind == "AWS::SQS::Queue":
        return session.client("sqs").get_queue_attributes(QueueUrl=name, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    if kind == "AWS::Lambda::Function":
        return session.client("lambda").get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    raise DeployError(f"cannot resolve the ARN of a {kind} locally")


def deploy_in_process(session: boto3.Session, assembly: Path, stack_name: str) -> StackOutputs:
    """The synthesized stack in an emulator without the CDK CLI (e.g. in-process `moto.mock_aws`): its outputs."""
    create_stack_from_assembly(session, assembly, stack_name)
    apply_event_invoke_configs(session, assembly, stack_name)
    return StackOutputs.from_stack(session, stack_name)
