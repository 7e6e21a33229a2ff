"""Every AWS call of a sweep that the watchdog drives is allowed by the functions' roles in the synthesized template
(the check of test_iam_scope.py): its trials' starts, their arrivals at a halving rung, the kicks at their ends, and the
sweep's message; and each invoke by the invoker's role."""

from lnn_cli.sweeps.record import SweepStore
from lnn_cli.sweeps.spec import parse_spec
from lnn_core.handlers import (
    build_launcher,
    build_trainer,
    build_watchdog,
)
from lnn_core.sweep.record import SweepRecord, active_key
from tests.conftest import FakeClock, QueueInvoker, blobs
from tests.integration.test_iam_scope import PARAMETERS, ROLES, Recorder, allowed_statements, npz_bytes, permitted


def test_every_call_of_a_sweep_the_watchdog_drives_is_allowed(aws, template):
    """The watchdog's pass starts a sweep's trials (their start marks, the data copied, the launcher invoked), records
    their arrivals at a halving rung, each trial's end kicks it (the trainer invokes it), and its last pass sends the
    sweep's message and removes the sweep's active mark: every request of it is allowed by its role, and each invoke
    by the invoker's."""
    X, y = blobs(40)
    steps, launches, kicks, clock = QueueInvoker(), QueueInvoker(), QueueInvoker(), FakeClock()
    recorders = {role: Recorder() for role in ("trainer", "launcher", "watchdog")}
    launcher = build_launcher(session=aws.session, invoker=steps, clock=clock)
    trainer = build_trainer(session=aws.session, invoker=steps, clock=clock, functions={"watchdog": kicks})
    watchdog = build_watchdog(session=aws.session, invoker=steps, clock=clock, functions={"launcher": launches})
    for role, handler in (("launcher", launcher), ("trainer", trainer), ("watchdog", watchdog)):
        recorders[role].attach(handler)
    data = npz_bytes(X=X, y=y)
    base = {**PARAMETERS, "granularity": "epoch", "validation_split": 0.25, "eval_every": 1}
    spec = parse_spec({"base": base, "seeds": [1, 2, 3], "halving": {"rungs": [1], "keep": 0.5}}, source="s.json")
    store = SweepStore(aws.s3, aws.bucket)  # what `lnn sweep start` writes, with the CLI's credentials
    record, _ = store.create(SweepRecord.new("sw", spec, spec.generate("sw"), data, 2), data)
    store.mark_active("sw")

    assert [outcome["started"] for outcome in watchdog.handle({})["sweeps"]] == [["sw-t001", "sw-t002"]]
    while launches.events or steps.events or kicks.events:
        if launches.events:
            assert launcher.handle(launches.events.popleft())["status"] == "running"
        elif steps.events:
            trainer.handle(steps.events.popleft())
        else:
            watchdog.handle(kicks.events.popleft())
    assert all(trainer.ports.table.get_run(run_id)["status"] == "succeeded" for run_id in ("sw-t001", "sw-t003"))
    assert not aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix=active_key("sw")).get("Contents")

    for role, recorder in recorders.items():
        statements = allowed_statements(template, ROLES[role])
        refused = sorted(call for call in recorder.calls if not permitted(call, statements))
        assert not refused, f"{role} would be denied: {refused}"
    assert {
        ("s3:ListBucket", "", "sweeps/active/"),
        ("s3:GetObject", "runs/sw/sweep.json", None),
        ("s3:GetObject", "runs/sw-t003/trial.json", None),
        ("s3:PutObject", "runs/sw-t003/trial.json", None),
        ("s3:GetObject", record.data_key, None),
        ("s3:PutObject", "runs/sw-t003/data.npz", None),
        ("s3:PutObject", "runs/sw/sweep-message.json", None),
        ("s3:GetObject", "runs/sw/sweep-message.json", None),
        ("s3:GetObject", "runs/sw/halving.json", None),
        ("s3:PutObject", "runs/sw/halving.json", None),
        ("s3:DeleteObject", "sweeps/active/sw", None),
        ("sns:Publish", "", None),
    } <= recorders["watchdog"].calls
    functions = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    watchdog_id = next(logical_id for logical_id in functions if logical_id.startswith("LnnTrainerWatchdogLambda"))
    launcher_id = next(logical_id for logical_id in functions if logical_id.startswith("LnnTrainerLaunchLambda"))
    watchdog_statements = allowed_statements(template, ROLES["watchdog"])
    assert not permitted(
        ("s3:GetObject", "runs/sw/data.npz", None), watchdog_statements
    )  # a run's data, not the sweep's
    assert not permitted(("s3:PutObject", "runs/sw/data.npz", None), watchdog_statements)  # only a trial's copy
    watchdog_name = functions[watchdog_id]["Properties"]["FunctionName"]
    assert functions[_trainer_id(functions)]["Properties"]["Environment"]["Variables"]["LNN_WATCHDOG_FUNCTION"] == (
        watchdog_name
    )
    assert invoke_targets(template, ROLES["trainer"]) >= {f"function:{watchdog_name}"}
    assert invoke_targets(template, ROLES["watchdog"]) >= {launcher_id}
    assert launcher_id not in invoke_targets(template, ROLES["trainer"])


def _trainer_id(functions: dict) -> str:
    return next(logical_id for logical_id in functions if logical_id.startswith("LnnTrainerTrainerLambda"))


def invoke_targets(template: dict, role_fragment: str) -> set[str]:
    """What a role may invoke: a function's logical id (a GetAtt of its ARN), or `function:NAME` (an ARN by name)."""
    targets = set()
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy" or not any(
            role_fragment in (role.get("Ref") or "") for role in resource["Properties"]["Roles"]
        ):
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if "lambda:InvokeFunction" not in (statement["Action"], *statement["Action"]):
                continue
            for arn in statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]:
                if "Fn::GetAtt" in arn:
                    targets.add(arn["Fn::GetAtt"][0])
                elif "Fn::Join" in arn:
                    targets.add("".join(part for part in arn["Fn::Join"][1] if isinstance(part, str)).split(":", 5)[-1])
    return targets
