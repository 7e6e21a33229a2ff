"""Every AWS call the handlers make in whole runs is allowed by their role in the synthesized template.

moto does not enforce IAM, so a least-privilege policy that is too tight would only fail on AWS. This test records
each request of the trainer, the launcher and the watchdog (operation, S3 key or ListBucket prefix, table or index)
over a layer run with mini-batches, a run of data-parallel rounds, one on data in parts, a watchdog resume, and a
run stopped after an epoch (its model kept) and continued by `lnn resume`, and each request of the predictor over
predictions, a describe and the requests for an unknown run and a run without a model, and checks it against the
statements of that function's role: the trimmed S3 scope of issue 10 passes the whole chain, and the predictor reads
nothing but runs/<run_id>/model.npz. The calls of a sweep are checked in test_iam_scope_sweeps.py."""

import fnmatch
import io
from types import SimpleNamespace

import numpy as np
import pytest

from lnn_cli.datafiles import data_in_parts
from lnn_core import run_control
from lnn_core.handlers import (
    build_launcher,
    build_predictor,
    build_trainer,
    build_watchdog,
)
from lnn_core.protocol.layout import staged_model_key
from tests.conftest import FakeClock, QueueInvoker, blobs

PARAMETERS = {
    "epochs": 2,
    "learning_rate": 0.1,
    "neurons": [3, 1],
    "activations": ["tanh", "sigmoid"],
    "seed": 1,
    "batch_size": 16,
}
ROLES = {
    "trainer": "TrainerLambdaRole",
    "launcher": "LaunchLambdaRole",
    "watchdog": "WatchdogLambdaRole",
    "predictor": "PredictLambdaRole",
}


def allowed_statements(template: dict, role_fragment: str) -> list[tuple[set[str], list[str], list[str] | None]]:
    """(actions, resource patterns, s3:prefix patterns) of every policy attached to the role; a bucket or table ARN is
    "", an object pattern its key pattern ("runs/*/state/*"), an index its "/index/NAME"; the prefix patterns are a
    statement's StringLike condition on s3:prefix (None: no such condition)."""
    statements = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        if not any(role_fragment in (role.get("Ref") or "") for role in resource["Properties"]["Roles"]):
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow" and set(statement.get("Condition", {})) <= {"StringLike"}, statement
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            prefixes = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
            statements.append(
                (
                    set(actions),
                    [pattern_of(resource) for resource in resources],
                    None if prefixes is None else [prefixes] if isinstance(prefixes, str) else prefixes,
                )
            )
    return statements


def pattern_of(resource) -> str:
    if isinstance(resource, dict) and "Fn::Join" in resource:
        return "".join(part for part in resource["Fn::Join"][1] if isinstance(part, str)).lstrip("/")
    return ""


class Recorder:
    """The requests of one function: (action, resource, s3:prefix) triples, from the parameters botocore is about to
    send; the prefix is a ListBucket's, None for any other request."""

    def __init__(self):
        self.calls: set[tuple[str, str, str | None]] = set()

    def attach(self, handler) -> None:
        ports = handler.ports
        clients = [ports.table._table.meta.client] if getattr(ports, "table", None) is not None else []
        if getattr(ports, "notifier", None) is not None:
            clients.append(ports.notifier._client)
        if ports.store is not None:
            clients.append(ports.store._client)
        for client in clients:
            client.meta.events.register("before-parameter-build.*.*", self.record)

    def record(self, model, params, **_):
        service, operation = model.service_model.service_name, model.name
        if service == "s3" and operation == "CopyObject":  # IAM checks a read of the source and a write of the copy
            source = params["CopySource"]
            source_key = source["Key"] if isinstance(source, dict) else source.split("?")[0].split("/", 1)[1]
            self.calls |= {("s3:GetObject", source_key, None), ("s3:PutObject", params["Key"], None)}
            if params.get("TaggingDirective") == "REPLACE" and params.get("Tagging"):
                self.calls.add(("s3:PutObjectTagging", params["Key"], None))
        elif service == "s3":
            keys = [item["Key"] for item in params.get("Delete", {}).get("Objects", [])] or [params.get("Key", "")]
            action = {"HeadObject": "GetObject", "DeleteObjects": "DeleteObject", "ListObjectsV2": "ListBucket"}.get(
                operation, operation
            )
            for key in keys:
                if action == "ListBucket":
                    self.calls.add((f"s3:{action}", "", params.get("Prefix", "")))
                else:
                    self.calls.add((f"s3:{action}", key, None))
            if operation == "PutObject" and "Tagging" in params:
                self.calls.add(("s3:PutObjectTagging", params["Key"], None))
        elif service == "dynamodb" and operation == "TransactWriteItems":  # IAM checks each item's own action
            actions = {
                "Put": "PutItem",
                "Update": "UpdateItem",
                "Delete": "DeleteItem",
                "ConditionCheck": "ConditionCheckItem",
            }
            for item in params["TransactItems"]:
                self.calls |= {(f"dynamodb:{actions[kind]}", "", None) for kind in item}
        elif service == "dynamodb":
            self.calls.add(
                (f"dynamodb:{operation}", f"index/{params['IndexName']}" if params.get("IndexName") else "", None)
            )
        else:
            self.calls.add((f"{service}:{operation}", "", None))


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def permitted(call: tuple, statements) -> bool:
    action, resource, prefix = call if len(call) == 3 else (*call, None)
    return any(
        action in actions
        and any(pattern == resource or (pattern and fnmatch.fnmatchcase(resource, pattern)) for pattern in patterns)
        and (prefixes is None or (prefix is not None and any(fnmatch.fnmatchcase(prefix, p) for p in prefixes)))
        for actions, patterns, prefixes in statements
    )


def test_every_call_of_whole_runs_is_allowed_by_the_functions_roles(aws, template, monkeypatch):
    X, y = blobs(40)
    queue, clock = QueueInvoker(), FakeClock()
    recorders = {role: Recorder() for role in ("trainer", "launcher", "watchdog")}
    launcher = build_launcher(session=aws.session, invoker=queue, clock=clock)
    trainer = build_trainer(session=aws.session, invoker=queue, clock=clock)
    monkeypatch.setenv("LNN_STALL_SECONDS", "60")
    watchdog = build_watchdog(session=aws.session, invoker=queue, clock=clock)
    for role, handler in (("launcher", launcher), ("trainer", trainer), ("watchdog", watchdog)):
        recorders[role].attach(handler)

    for run_id, parameters in (
        ("layers", {**PARAMETERS, "granularity": "layer"}),
        ("rounds", {**PARAMETERS, "granularity": "epoch", "workers": 2, "reduce": "slices"}),
        ("in-shard", {**PARAMETERS, "granularity": "epoch", "workers": 2, "reduce": "shard"}),
        ("parts", {**PARAMETERS, "granularity": "epoch", "workers": 2, "data": "runs/parts/data/"}),
    ):
        if run_id == "parts":  # listed, read by ranged GETs (the launcher), a part per shard, common.npz
            for name, body in data_in_parts(npz_bytes(X=X, y=y), 2).items():
                aws.s3.put_object(Bucket=aws.bucket, Key=f"runs/parts/data/{name}", Body=body)
        else:
            aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
        assert launcher.handle({"run_id": run_id, "parameters": parameters})["status"] == "running"
        trainer.handle(queue.events.popleft())
        queue.events.clear()  # the next step is lost: the watchdog resumes the run
        clock.advance(61)
        assert watchdog.handle({})["stalled"][0]["outcome"] == "resumed"
        while queue.events:
            trainer.handle(queue.events.popleft())
        assert trainer.ports.table.get_run(run_id)["status"] == "succeeded"

    # A finisher dies while publishing: the watchdog's sweep publishes the model and sends the message owed.
    aws.upload_data("runs/owed/data.npz", X=X, y=y)
    assert (
        launcher.handle({"run_id": "owed", "parameters": {**PARAMETERS, "granularity": "epoch"}})["status"] == "running"
    )
    while queue.events[0]["state"] != "finish":
        trainer.handle(queue.events.popleft())
    publish = trainer.ports.notifier.publish
    trainer.ports.notifier.publish = dying
    with pytest.raises(RuntimeError):
        trainer.handle(queue.events.popleft())
    trainer.ports.notifier.publish = publish
    clock.advance(61)
    assert watchdog.handle({})["messages_owed"] == [
        {"run_id": "owed", "outcome": "message sent", "status": "succeeded"}
    ]

    # A run stopped after its first epoch keeps that epoch's model (its stopper dies while publishing it, and the
    # watchdog's sweep publishes it); `lnn resume` (the operator's, not a function's) continues it to its end.
    aws.upload_data("runs/paused/data.npz", X=X, y=y)
    assert (
        launcher.handle({"run_id": "paused", "parameters": {**PARAMETERS, "granularity": "epoch"}})["status"]
        == "running"
    )
    trainer.handle(queue.events.popleft())
    run_control.stop_run(trainer.ports, "paused")
    trainer.ports.notifier.publish = dying
    with pytest.raises(RuntimeError):
        trainer.handle(queue.events.popleft())
    trainer.ports.notifier.publish = publish
    clock.advance(61)
    assert watchdog.handle({})["messages_owed"] == [
        {"run_id": "paused", "outcome": "message sent", "status": "stopped"}
    ]
    assert (
        run_control.resume_run(build_trainer(session=aws.session, invoker=queue, clock=clock).ports, "paused")[
            "outcome"
        ]
        == "continued"
    )
    while queue.events:
        trainer.handle(queue.events.popleft())
    assert trainer.ports.table.get_run("paused")["status"] == "succeeded"

    for role, recorder in recorders.items():
        statements = allowed_statements(template, ROLES[role])
        refused = sorted(call for call in recorder.calls if not permitted(call, statements))
        assert recorder.calls and not refused, f"{role} would be denied: {refused}"
    rounds = "runs/rounds/state/"  # a shard's sums (scratch), a slice's ranged GETs of them, its rows of the state
    assert {
        ("s3:PutObject", rounds + "e0000001/b000001/shard-000-0.bin", None),
        ("s3:PutObjectTagging", rounds + "e0000001/b000001/shard-000-0.bin", None),
        ("s3:PutObjectTagging", rounds + "e0000001/b000001/shard-001-1.bin", None),
        ("s3:GetObject", rounds + "e0000001/b000001/shard-001-1.bin", None),
        ("s3:PutObjectTagging", rounds + "params-e0000001-b000001/params-000.npz", None),
        ("s3:PutObjectTagging", rounds + "params-e0000001-b000001/params-001.npz", None),  # gd: one object a slice
        ("s3:DeleteObject", rounds + "e0000001/b000001/shard-001-0.bin", None),
    } <= recorders["trainer"].calls
    assert {("dynamodb:UpdateItem", "", None), ("dynamodb:GetItem", "", None)} <= recorders["trainer"].calls
    assert any(action == "dynamodb:Query" for action, _, _ in recorders["watchdog"].calls)
    assert {
        ("s3:ListBucket", "", "runs/parts/data/"),
        ("s3:GetObject", "runs/parts/data/part-1-of-2.npz", None),
    } <= recorders["launcher"].calls
    assert ("s3:GetObject", "runs/parts/data/part-1-of-2.npz", None) in recorders["trainer"].calls
    assert {
        ("s3:GetObject", staged_model_key("owed", 2), None),
        ("s3:PutObject", "runs/owed/model.npz", None),
        ("s3:GetObject", staged_model_key("paused", 1), None),
        ("s3:PutObject", "runs/paused/model.npz", None),
        ("sns:Publish", "", None),
    } <= recorders["watchdog"].calls
    assert ("s3:PutObject", staged_model_key("paused", 1), None) in recorders["trainer"].calls  # the stop's model


def dying(**_):
    raise RuntimeError("the finisher's process died while publishing")


def test_every_call_of_the_predictor_is_allowed_by_its_role(aws, template):
    """Predictions (a cold container GETs the model, a warm one HEADs it), a describe, a request for an unknown run
    and one for a run without a model: every request reads runs/<run_id>/model.npz, or lists under runs/<run_id>/."""
    X, y = blobs(40)
    queue, clock = QueueInvoker(), FakeClock()
    aws.upload_data("runs/trained/data.npz", X=X, y=y)
    aws.upload_data("runs/untrained/data.npz", X=X, y=y)
    launcher = build_launcher(session=aws.session, invoker=queue, clock=clock)
    trainer = build_trainer(session=aws.session, invoker=queue, clock=clock)
    assert (
        launcher.handle({"run_id": "trained", "parameters": {**PARAMETERS, "granularity": "epoch"}})["status"]
        == "running"
    )
    while queue.events:
        trainer.handle(queue.events.popleft())
    assert trainer.ports.table.get_run("trained")["status"] == "succeeded"

    predictor, recorder = build_predictor(session=aws.session), Recorder()
    recorder.attach(predictor)
    rows = X[:3].tolist()
    requests = [
        {"run_id": "trained", "X": rows},
        {"run_id": "trained", "X": rows},
        {"run_id": "trained", "describe": True},
        {"run_id": "nowhere", "X": rows},
        {"run_id": "untrained", "X": rows},
    ]
    answers = [predictor.handle(request) for request in requests]

    statements = allowed_statements(template, ROLES["predictor"])
    refused = sorted(call for call in recorder.calls if not permitted(call, statements))
    assert not refused, f"predictor would be denied: {refused}"
    assert [answer.get("error") for answer in answers[:3]] == [None] * 3
    assert "there is no run" in answers[3]["error"] and "has no model yet" in answers[4]["error"]
    assert recorder.calls >= {
        ("s3:GetObject", "runs/trained/model.npz", None),  # its HEADs and its GET
        ("s3:GetObject", "runs/nowhere/model.npz", None),
        ("s3:ListBucket", "", "runs/nowhere/"),
        ("s3:ListBucket", "", "runs/untrained/"),
    }


def test_the_check_refuses_what_a_role_does_not_allow(template):
    trainer = allowed_statements(template, ROLES["trainer"])
    assert permitted(("s3:PutObject", "runs/r1/state/params-e0000001.npz"), trainer)
    assert not permitted(("s3:PutObject", "runs/r1/data.npz"), trainer)  # the trainer never writes a run's data
    assert not permitted(("s3:DeleteObject", "runs/r1/model.npz"), trainer)
    assert not permitted(("dynamodb:Scan", ""), trainer)
    predictor = allowed_statements(template, ROLES["predictor"])
    assert permitted(("s3:GetObject", "runs/r1/model.npz", None), predictor)
    assert not permitted(("s3:GetObject", "runs/r1/data.npz", None), predictor)  # the predictor reads models only
    assert not permitted(("s3:GetObject", "runs/r1/state/params-e0000001.npz", None), predictor)
    assert not permitted(("s3:PutObject", "runs/r1/model.npz", None), predictor)
    assert permitted(("s3:ListBucket", "", "runs/r1/"), predictor)
    assert not permitted(("s3:ListBucket", "", ""), predictor)  # the whole bucket: outside the s3:prefix condition
    assert not permitted(("s3:ListBucket", "", None), predictor)
    assert not permitted(("dynamodb:GetItem", "", None), predictor)


def test_a_transaction_and_a_copy_are_checked_as_the_actions_iam_authorizes(template):
    """IAM has no TransactWriteItems or CopyObject action: it checks each item's write and its condition check, and a
    copy's read of its source and write of its destination."""

    def call(service, operation, **params):
        recorder = Recorder()
        recorder.record(SimpleNamespace(service_model=SimpleNamespace(service_name=service), name=operation), params)
        return recorder.calls

    transaction = call(
        "dynamodb", "TransactWriteItems", TransactItems=[{"ConditionCheck": {}}, {"Put": {}}, {"Put": {}}]
    )
    assert transaction == {("dynamodb:ConditionCheckItem", "", None), ("dynamodb:PutItem", "", None)}
    copy = call(
        "s3",
        "CopyObject",
        Bucket="b",
        Key="runs/r1/model.npz",
        CopySource={"Bucket": "b", "Key": "runs/r1/state/staged-model.npz"},
    )
    assert copy == {
        ("s3:GetObject", "runs/r1/state/staged-model.npz", None),
        ("s3:PutObject", "runs/r1/model.npz", None),
    }
    assert (
        call("s3", "CopyObject", Bucket="b", Key="runs/r1/model.npz", CopySource="b/runs/r1/state/staged-model.npz")
        == copy
    )
    launcher, predictor = (
        allowed_statements(template, ROLES["launcher"]),
        allowed_statements(template, ROLES["predictor"]),
    )
    assert not all(permitted(c, launcher) for c in transaction)  # the launcher's role has no ConditionCheckItem
    assert not all(permitted(c, predictor) for c in copy)  # the predictor may read the model, not write it


def test_no_role_reaches_a_model_that_was_not_published(template):
    """IAM's * matches /: the staged model's name must not end in /model.npz, or the predictor could read a model
    whose ending never committed and the watchdog overwrite a staged one (review R5)."""
    predictor, watchdog = (
        allowed_statements(template, ROLES["predictor"]),
        allowed_statements(template, ROLES["watchdog"]),
    )
    staged = staged_model_key("r1", 3)
    assert not permitted(("s3:GetObject", staged, None), predictor)
    assert not permitted(("s3:PutObject", staged, None), watchdog)
    assert permitted(("s3:GetObject", staged, None), watchdog) and permitted(
        ("s3:PutObject", "runs/r1/model.npz"), watchdog
    )
