"""The synthesized template's functions with default settings: runtime, handlers, code, environment and log groups,
their asynchronous invocation, the rules that start them, the alarms and the dashboard that watch them, and the
PredictLambda's options."""

import json

import pytest

from lnn_stack.functions import RUNTIME
from tests.infrastructure.conftest import DEFAULT_TRAINING, arn, ref


def test_functions_runtime_handlers_architecture_layer_and_log_groups(synthesized, ids):
    for name, handler, memory, timeout, reserved in [
        ("trainer", "lnn_core.handlers.train", 1024, 300, 20),
        ("launcher", "lnn_core.handlers.launch", 1024, 300, 2),
        ("watchdog", "lnn_core.handlers.watchdog", 256, 60, None),
        ("predictor", "lnn_core.handlers.predict", 1024, 30, None),  # synchronous: no reservation, no async config
    ]:
        properties = synthesized.resources[ids[name]]["Properties"]
        assert properties["Runtime"] == RUNTIME.name == "python3.14"
        assert properties["Handler"] == handler
        assert properties["Architectures"] == ["arm64"]
        assert (properties["MemorySize"], properties["Timeout"]) == (memory, timeout)
        assert properties["Layers"] == [ref(ids["layer"])]
        assert properties["LoggingConfig"] == {"LogGroup": ref(ids[f"{name}_logs"])}
        assert properties["Role"] == arn(ids[f"{name}_role"])
        # Cost cap: the trainer's default reservation and the launcher's small one; the watchdog runs alone.
        assert properties.get("ReservedConcurrentExecutions") == reserved


def test_only_the_trainer_allows_recursive_loops(synthesized, ids):
    assert synthesized.resources[ids["trainer"]]["Properties"]["RecursiveLoop"] == "Allow"
    for name in ("launcher", "watchdog", "predictor"):
        assert "RecursiveLoop" not in synthesized.resources[ids[name]]["Properties"]


def test_code_is_the_lambda_src_asset(synthesized, ids):
    keys = {
        synthesized.resources[ids[name]]["Properties"]["Code"]["S3Key"]
        for name in ("trainer", "launcher", "watchdog", "predictor")
    }
    assert len(keys) == 1
    assets = json.loads((synthesized.assembly_dir / f"{synthesized.stack.stack_name}.assets.json").read_text())
    (code_asset,) = [
        asset
        for asset in assets["files"].values()
        if any(d["objectKey"] in keys for d in asset["destinations"].values())
    ]
    staged = synthesized.assembly_dir / code_asset["source"]["path"]
    assert (staged / "lnn_core" / "handlers.py").is_file()
    assert not list(staged.rglob("__pycache__"))


def test_environment_variables(synthesized, ids):
    def environment(name):
        return synthesized.resources[ids[name]]["Properties"]["Environment"]["Variables"]

    powertools = {"POWERTOOLS_SERVICE_NAME": "lnn", "POWERTOOLS_METRICS_NAMESPACE": "LNN"}
    shared = {"LNN_TABLE": ref(ids["table"]), "LNN_TOPIC_ARN": ref(ids["topic"]), **powertools}
    # The trainer learns its own name from AWS_LAMBDA_FUNCTION_NAME: its own ARN here would be a cycle; and the
    # watchdog's (a sweep trial's end kicks it) as a name fixed at synth time, not a reference (a cycle too).
    watchdog_name = synthesized.resources[ids["watchdog"]]["Properties"]["FunctionName"]
    assert isinstance(watchdog_name, str) and watchdog_name.endswith("-watchdog") and len(watchdog_name) <= 64
    assert environment("trainer") == {
        "LNN_BUCKET": ref(ids["bucket"]),
        "LNN_WATCHDOG_FUNCTION": watchdog_name,
        **shared,
    }
    launcher = environment("launcher")
    assert json.loads(launcher.pop("LNN_TRAINING_DEFAULTS")) == DEFAULT_TRAINING
    assert launcher == {
        "LNN_BUCKET": ref(ids["bucket"]),
        "LNN_TRAINER_FUNCTION": ref(ids["trainer"]),
        "LNN_MAX_RUNNING_RUNS": "10",  # max_running_runs
        "LNN_TRAINER_MEMORY_MB": "1024",  # the trainer's memory size: a run that cannot fit is refused
        "LNN_TRAINER_RESERVED_CONCURRENCY": "20",  # a run with more shard workers than this is refused
        **shared,
    }
    assert environment("watchdog") == {
        "LNN_TRAINER_FUNCTION": ref(ids["trainer"]),
        "LNN_STALL_SECONDS": "900",
        "LNN_TRAINER_TIMEOUT_SECONDS": "300",  # the trainer's timeout
        "LNN_EVENT_AGE_SECONDS": "21600",  # the trainer's MaximumEventAgeInSeconds
        "LNN_BUCKET": ref(ids["bucket"]),  # it publishes the model of a run still owed its message
        # it drives sweeps: it launches a queued trial, within the launcher's limits
        "LNN_LAUNCH_FUNCTION": ref(ids["launcher"]),
        "LNN_MAX_RUNNING_RUNS": "10",
        "LNN_TRAINER_RESERVED_CONCURRENCY": "20",
        **shared,
    }
    # The predictor reads models from the bucket; it has no table, topic or function to reach.
    assert environment("predictor") == {"LNN_BUCKET": ref(ids["bucket"]), **powertools}


def test_log_groups_keep_seven_days_and_are_destroyed_with_the_stack(synthesized):
    log_groups = synthesized.of_type("AWS::Logs::LogGroup")
    assert len(log_groups) == 4  # one per function
    for log_group in log_groups.values():
        assert log_group["Properties"] == {"RetentionInDays": 7}
        assert log_group["DeletionPolicy"] == log_group["UpdateReplacePolicy"] == "Delete"


def test_async_invoke_configs(synthesized, ids):
    configs = {
        c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
        for c in synthesized.of_type("AWS::Lambda::EventInvokeConfig").values()
    }
    on_failure_topic = {"OnFailure": {"Destination": ref(ids["topic"])}}
    assert configs[ids["trainer"]] == {
        "FunctionName": ref(ids["trainer"]),
        "Qualifier": "$LATEST",
        "MaximumRetryAttempts": 2,
        "MaximumEventAgeInSeconds": 6 * 3600,
        "DestinationConfig": on_failure_topic,
    }
    assert configs[ids["launcher"]] == {
        "FunctionName": ref(ids["launcher"]),
        "Qualifier": "$LATEST",
        "DestinationConfig": on_failure_topic,
    }
    assert configs[ids["watchdog"]] == {
        "FunctionName": ref(ids["watchdog"]),
        "Qualifier": "$LATEST",
        "MaximumRetryAttempts": 0,
        "DestinationConfig": {"OnFailure": {"Destination": arn(ids["dlq"])}},
    }


def test_parameters_upload_rule_starts_the_launcher(synthesized, trainer, ids):
    rule = synthesized.resource(trainer.launch_rule)["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [ref(ids["bucket"])]},
            "object": {"key": [{"wildcard": "runs/*/parameters.json"}]},
        },
    }
    assert rule["Targets"] == [
        {
            "Arn": arn(ids["launcher"]),
            "Id": "Target0",
            # A delivery that fails is retried, then kept in the DLQ (whose alarm notifies the topic).
            "DeadLetterConfig": {"Arn": arn(ids["dlq"])},
            "RetryPolicy": {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 7200},
        }
    ]
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": arn(ids["launcher"]),
            "Principal": "events.amazonaws.com",
            "SourceArn": arn(synthesized.logical_id(trainer.launch_rule)),
        },
    )


def test_watchdog_runs_on_a_schedule(synthesized, trainer, ids):
    rule = synthesized.resource(trainer.watchdog_rule)["Properties"]
    assert rule["ScheduleExpression"] == "rate(5 minutes)"
    assert rule["Targets"] == [
        {
            "Arn": arn(ids["watchdog"]),
            "Id": "Target0",
            "DeadLetterConfig": {"Arn": arn(ids["dlq"])},
            # An event older than one period is superseded by the next one.
            "RetryPolicy": {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 300},
        }
    ]
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": arn(ids["watchdog"]),
            "Principal": "events.amazonaws.com",
            "SourceArn": arn(synthesized.logical_id(trainer.watchdog_rule)),
        },
    )


def test_invocations_alarm_notifies_the_topic(synthesized, trainer, ids):
    alarm = dict(synthesized.resource(trainer.invocations_alarm)["Properties"])
    assert alarm.pop("AlarmDescription").startswith("LNN guard rail")
    assert alarm == {
        "Namespace": "AWS/Lambda",
        "MetricName": "Invocations",
        "Dimensions": [{"Name": "FunctionName", "Value": ref(ids["trainer"])}],
        "Statistic": "Sum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 5000,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [ref(ids["topic"])],
    }


def test_dead_letter_alarm_notifies_the_topic_when_a_message_waits(synthesized, ids):
    alarm = dict(synthesized.resources[ids["dlq_alarm"]]["Properties"])
    assert alarm.pop("AlarmDescription").startswith("LNN guard rail")
    assert alarm == {
        "Namespace": "AWS/SQS",
        "MetricName": "ApproximateNumberOfMessagesVisible",
        "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [ids["dlq"], "QueueName"]}}],
        "Statistic": "Maximum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [ref(ids["topic"])],
    }


# ---- the PredictLambda's options and the dashboard ------------------------------------------------------------------


def test_the_predictor_is_only_invoked_synchronously(synthesized, ids):
    configs = [
        c["Properties"]["FunctionName"]["Ref"] for c in synthesized.of_type("AWS::Lambda::EventInvokeConfig").values()
    ]
    assert ids["predictor"] not in configs
    assert not synthesized.of_type("AWS::Lambda::Url")  # predict_url is off by default
    assert not [
        p
        for p in synthesized.of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] in (ref(ids["predictor"]), arn(ids["predictor"]))
    ]


def dashboard_widgets(synthesized, ids) -> list[dict]:
    body = synthesized.resources[ids["dashboard"]]["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1]
    # Tokens (function names, the alarm's ARN) become placeholders: the widgets' layout and metrics stay readable.
    text = "".join(part if isinstance(part, str) else json.dumps(json.dumps(part))[1:-1] for part in parts)
    return json.loads(text)["widgets"]


def test_dashboard_shows_the_trainer_metrics_the_alarm_and_the_predictor(synthesized, ids):
    widgets = dashboard_widgets(synthesized, ids)
    titles = [widget["properties"]["title"] for widget in widgets]
    assert titles == [
        "Trainer cost (mean of the epochs' costs)",
        "Trainer steps",
        "Trainer errors and throttles",
        "Trainer duration p99",
        "Trainer invocations alarm",
        "PredictLambda invocations and errors",
    ]
    metrics = {widget["properties"]["title"]: widget["properties"].get("metrics") for widget in widgets}
    # The EMF metrics as Powertools emits them: namespace LNN, dimension service=lnn (handlers.build_trainer).
    assert metrics["Trainer cost (mean of the epochs' costs)"][0][:4] == ["LNN", "Cost", "service", "lnn"]
    assert metrics["Trainer steps"] == [["LNN", "Steps", "service", "lnn", {"stat": "Sum"}]]
    trainer_name, predictor_name = json.dumps(ref(ids["trainer"])), json.dumps(ref(ids["predictor"]))
    names = [(m[1], m[3], m[4]["stat"]) for m in metrics["Trainer errors and throttles"]]
    assert names == [("Errors", trainer_name, "Sum"), ("Throttles", trainer_name, "Sum")]
    [duration] = metrics["Trainer duration p99"]
    assert (duration[1], duration[3], duration[4]["stat"]) == ("Duration", trainer_name, "p99")
    predictor = [(m[1], m[3], m[4]["stat"]) for m in metrics["PredictLambda invocations and errors"]]
    assert predictor == [("Invocations", predictor_name, "Sum"), ("Errors", predictor_name, "Sum")]
    alarm = widgets[titles.index("Trainer invocations alarm")]["properties"]["annotations"]["alarms"]
    assert len(alarm) == 1 and json.dumps(ref(ids["invocations_alarm"])) in alarm[0]  # the ARN, from the alarm's name


def test_predict_url_is_an_aws_iam_function_url_with_its_output(tmp_path):
    from tests.infrastructure.conftest import synthesize

    with_url = synthesize(tmp_path, {"predict_url": "true"})
    predictor = with_url.logical_id(with_url.stack.trainer.predict_function)
    [url] = with_url.of_type("AWS::Lambda::Url").values()
    assert url["Properties"] == {"AuthType": "AWS_IAM", "TargetFunctionArn": arn(predictor)}
    assert with_url.outputs["PredictFunctionUrl"]["Value"] == {
        "Fn::GetAtt": [with_url.logical_id(with_url.stack.trainer.predict_url), "FunctionUrl"]
    }
    # No resource policy opens it: callers need lambda:InvokeFunctionUrl in their own (signed) identity policy.
    assert not with_url.of_type("AWS::Lambda::Permission").keys() - synthesized_permissions(with_url)


def synthesized_permissions(synth) -> set[str]:
    """The two EventBridge rule permissions (the launcher's and the watchdog's): the only ones the stack has."""
    return {
        key
        for key, permission in synth.of_type("AWS::Lambda::Permission").items()
        if permission["Properties"]["Principal"] == "events.amazonaws.com"
    }


def test_predict_false_leaves_the_predictor_out():
    from aws_cdk import App, Stack

    from lnn_stack.lnn_trainer import LnnTrainer
    from tests.infrastructure.conftest import SKIP_BUNDLING

    app = App(context=SKIP_BUNDLING)
    stack = Stack(app, "NoPredict")
    trainer = LnnTrainer(stack, "Trainer", predict=False)
    template = app.synth().get_stack_by_name("NoPredict").template
    handlers = sorted(
        r["Properties"]["Handler"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
    )
    assert handlers == ["lnn_core.handlers.launch", "lnn_core.handlers.train", "lnn_core.handlers.watchdog"]
    assert trainer.predict_function is None and trainer.predict_url is None
    with pytest.raises(ValueError, match="predict_url needs the PredictLambda"):
        LnnTrainer(Stack(App(context=SKIP_BUNDLING), "Bad"), "Trainer", predict=False, predict_url=True)
