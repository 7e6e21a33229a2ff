"""Every AWS call the handlers make in whole runs is allowed by their role in the synthesized template.

moto does not enforce IAM, so a least-privilege policy that is too tight would only fail on AWS. This test records
each request of the trainer, the launcher and the watchdog (operation, S3 key, table or index) over a layer run with
mini-batches, a run of data-parallel rounds and a watchdog resume, and checks it against the statements of that
function's role: the trimmed S3 scope of issue 10 passes the whole chain.
"""

import fnmatch
import json

import pytest

from lnn_core.handlers import build_launcher, build_trainer, build_watchdog
from tests.conftest import FakeClock, QueueInvoker, blobs

PARAMETERS = {"epochs": 2, "learning_rate": 0.1, "neurons": [3, 1], "activations": ["tanh", "sigmoid"], "seed": 1,
              "batch_size": 16}
ROLES = {"trainer": "TrainerLambdaRole", "launcher": "LaunchLambdaRole", "watchdog": "WatchdogLambdaRole"}


def allowed_statements(template: dict, role_fragment: str) -> list[tuple[set[str], list[str]]]:
    """(actions, resource patterns) of every policy attached to the role; a bucket or table ARN is "", an object
    pattern its key pattern ("runs/*/state/*"), an index its "/index/NAME"."""
    statements = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        if not any(role_fragment in (role.get("Ref") or "") for role in resource["Properties"]["Roles"]):
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            statements.append((set(actions), [pattern_of(resource) for resource in resources]))
    return statements


def pattern_of(resource) -> str:
    if isinstance(resource, dict) and "Fn::Join" in resource:
        return "".join(part for part in resource["Fn::Join"][1] if isinstance(part, str)).lstrip("/")
    return ""


class Recorder:
    """The requests of one function: (action, resource) pairs, from the parameters botocore is about to send."""

    def __init__(self):
        self.calls: set[tuple[str, str]] = set()

    def attach(self, handler) -> None:
        ports = handler.ports
        clients = [ports.table._table.meta.client, ports.notifier._client]
        if ports.store is not None:
            clients.append(ports.store._client)
        for client in clients:
            client.meta.events.register("before-parameter-build.*.*", self.record)

    def record(self, model, params, **_):
        service, operation = model.service_model.service_name, model.name
        if service == "s3":
            keys = [item["Key"] for item in params.get("Delete", {}).get("Objects", [])] or [params.get("Key", "")]
            action = {"HeadObject": "GetObject", "DeleteObjects": "DeleteObject", "ListObjectsV2": "ListBucket"}.get(operation, operation)
            for key in keys:
                self.calls.add((f"s3:{action}", "" if action == "ListBucket" else key))
            if operation == "PutObject" and "Tagging" in params:
                self.calls.add(("s3:PutObjectTagging", params["Key"]))
        elif service == "dynamodb":
            self.calls.add((f"dynamodb:{operation}", f"index/{params['IndexName']}" if params.get("IndexName") else ""))
        else:
            self.calls.add((f"{service}:{operation}", ""))


def permitted(call: tuple[str, str], statements) -> bool:
    action, resource = call
    return any(action in actions and any(pattern == resource or (pattern and fnmatch.fnmatchcase(resource, pattern))
                                         for pattern in patterns)
               for actions, patterns in statements)


@pytest.fixture(scope="module")
def template(assembly):
    return json.loads((assembly / "LnnStack.template.json").read_text())


def test_every_call_of_whole_runs_is_allowed_by_the_functions_roles(aws, template, monkeypatch):
    X, y = blobs(40)
    queue, clock = QueueInvoker(), FakeClock()
    recorders = {role: Recorder() for role in ROLES}
    launcher = build_launcher(session=aws.session, invoker=queue, clock=clock)
    trainer = build_trainer(session=aws.session, invoker=queue, clock=clock)
    monkeypatch.setenv("LNN_STALL_SECONDS", "60")
    watchdog = build_watchdog(session=aws.session, invoker=queue, clock=clock)
    for role, handler in (("launcher", launcher), ("trainer", trainer), ("watchdog", watchdog)):
        recorders[role].attach(handler)

    for run_id, parameters in (("layers", {**PARAMETERS, "granularity": "layer"}),
                               ("rounds", {**PARAMETERS, "granularity": "epoch", "workers": 2})):
        aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
        assert launcher.handle({"run_id": run_id, "parameters": parameters})["status"] == "running"
        trainer.handle(queue.events.popleft())
        queue.events.clear()  # the next step is lost: the watchdog resumes the run
        clock.advance(61)
        assert watchdog.handle({})["stalled"][0]["outcome"] == "resumed"
        while queue.events:
            trainer.handle(queue.events.popleft())
        assert trainer.ports.table.get_run(run_id)["status"] == "succeeded"

    for role, recorder in recorders.items():
        statements = allowed_statements(template, ROLES[role])
        refused = sorted(call for call in recorder.calls if not permitted(call, statements))
        assert recorder.calls and not refused, f"{role} would be denied: {refused}"
    assert ("s3:PutObjectTagging", "runs/rounds/state/e0000001/b000001/shard-000.npz") in recorders["trainer"].calls
    assert any(action == "dynamodb:Query" for action, _ in recorders["watchdog"].calls)


def test_the_check_refuses_what_a_role_does_not_allow(template):
    trainer = allowed_statements(template, ROLES["trainer"])
    assert permitted(("s3:PutObject", "runs/r1/state/params-e0000001.npz"), trainer)
    assert not permitted(("s3:PutObject", "runs/r1/data.npz"), trainer)  # the trainer never writes a run's data
    assert not permitted(("s3:DeleteObject", "runs/r1/model.npz"), trainer)
    assert not permitted(("dynamodb:Scan", ""), trainer)
