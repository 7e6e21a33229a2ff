"""Context parameters: every key is validated, and a bad value gives one message naming key, value and fix."""

import json
import re

import pytest
from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_logs as logs

from lnn_core.ml.parameters import MAX_SEED
from lnn_stack.settings.context import ContextError
from lnn_stack.settings.deployment import DEPLOYMENT_PARAMETERS, DeploymentSettings
from lnn_stack.settings.from_context import KNOWN_KEYS, settings_from_context
from lnn_stack.settings.training import TRAINING_PARAMETERS, TrainingDefaults
from tests.infrastructure.conftest import CUSTOM_CONTEXT, DEFAULT_TRAINING, PROJECT_DIR

ALL_PARAMETERS = [*DEPLOYMENT_PARAMETERS.values(), *TRAINING_PARAMETERS.values()]


def error_of(context: dict) -> str:
    with pytest.raises(ContextError) as caught:
        settings_from_context(context)
    return str(caught.value)


def test_empty_context_gives_the_documented_defaults():
    deployment, training = settings_from_context({})
    assert deployment == DeploymentSettings(
        stack_name="LnnStack",
        architecture="arm64",
        memory_size=1024,
        timeout_seconds=300,
        notification_email=None,
        log_retention_days=7,
        billing_mode="on_demand",
        removal_policy="retain",
        reserved_concurrency=20,
        max_running_runs=10,
        stall_minutes=15,
        watchdog_rate_minutes=5,
        invocation_alarm_threshold=5000,
    )
    assert training == TrainingDefaults(
        epochs=100,
        learning_rate=0.0075,
        neurons=(20, 7, 5, 1),
        activations=("relu", "relu", "relu", "sigmoid"),
        granularity="layer",
        init="lecun",
        seed=None,
    )
    assert deployment.lambda_architecture.name == "arm64"
    assert deployment.log_retention == logs.RetentionDays.ONE_WEEK
    assert deployment.table_billing_mode == dynamodb.BillingMode.PAY_PER_REQUEST
    assert deployment.data_removal_policy == RemovalPolicy.RETAIN
    assert deployment.timeout.to_seconds() == 300
    assert deployment.stall_after.to_minutes() == 15
    assert deployment.watchdog_rate.to_minutes() == 5


def test_string_values_from_the_command_line_are_parsed():
    deployment, training = settings_from_context(CUSTOM_CONTEXT)
    assert deployment == DeploymentSettings(
        stack_name="LnnCustom",
        architecture="x86_64",
        memory_size=2048,
        timeout_seconds=600,
        notification_email="ops@example.com",
        log_retention_days=14,
        billing_mode="provisioned",
        removal_policy="destroy",
        reserved_concurrency=10,
        max_running_runs=50,
        stall_minutes=20,
        watchdog_rate_minutes=10,
        invocation_alarm_threshold=100,
    )
    assert training == TrainingDefaults(
        epochs=7,
        learning_rate=0.01,
        neurons=(8, 3),
        activations=("tanh", "softmax"),
        granularity="epoch",
        init="he",
        seed=42,
    )
    assert deployment.lambda_architecture.name == "x86_64"
    assert deployment.log_retention == logs.RetentionDays.TWO_WEEKS
    assert deployment.table_billing_mode == dynamodb.BillingMode.PROVISIONED
    assert deployment.data_removal_policy == RemovalPolicy.DESTROY


def test_json_values_from_cdk_json_are_accepted():
    deployment, training = settings_from_context(
        {
            "memory_size": 2048,
            "reserved_concurrency": 5,
            "neurons": [4, 1],
            "activations": ["relu", "sigmoid"],
            "learning_rate": 0.5,
            "seed": 0,
        }
    )
    assert (deployment.memory_size, deployment.reserved_concurrency) == (2048, 5)
    assert (training.neurons, training.activations, training.learning_rate, training.seed) == (
        (4, 1),
        ("relu", "sigmoid"),
        0.5,
        0,
    )


def test_an_empty_value_clears_an_optional_parameter():
    deployment, training = settings_from_context({"notification_email": "", "reserved_concurrency": "", "seed": ""})
    assert (deployment.notification_email, deployment.reserved_concurrency, training.seed) == (None, None, None)


def test_reserved_concurrency_is_on_by_default_and_none_lifts_it_for_the_trainer_and_the_launcher():
    deployment, _ = settings_from_context({})
    assert (deployment.reserved_concurrency, deployment.launcher_reserved_concurrency) == (20, 2)
    deployment, _ = settings_from_context({"reserved_concurrency": "none"})
    assert (deployment.reserved_concurrency, deployment.launcher_reserved_concurrency) == (None, None)
    deployment, _ = settings_from_context({"reserved_concurrency": "50"})
    assert (deployment.reserved_concurrency, deployment.launcher_reserved_concurrency) == (50, 2)
    assert error_of({"reserved_concurrency": "None"}) == (
        "Context parameter 'reserved_concurrency' must be an integer from 1 to 10000, or none (no reserved "
        "concurrency); got 'None'. Fix: cdk synth -c reserved_concurrency=20"
    )


def test_the_unsubscribed_warning_only_without_an_email():
    deployment, _ = settings_from_context({})
    assert deployment.unsubscribed_warning == (
        "Warning: no notification_email: run results, failed events and alarms reach the SNS topic, but nobody "
        "is subscribed to it. Fix: cdk deploy -c notification_email=you@example.com"
    )
    deployment, _ = settings_from_context({"notification_email": "ops@example.com"})
    assert deployment.unsubscribed_warning is None


def test_the_message_for_a_bad_value_names_the_key_the_value_what_it_accepts_and_the_fix():
    assert error_of({"memory_size": "abc"}) == (
        "Context parameter 'memory_size' must be an integer from 128 to 10240 (MB); got 'abc'. "
        "Fix: cdk synth -c memory_size=1024"
    )


@pytest.mark.parametrize("parameter", ALL_PARAMETERS, ids=lambda parameter: parameter.key)
def test_every_parameter_rejects_a_bad_value_with_its_own_message(parameter):
    message = error_of({parameter.key: "bogus value!"})
    assert message == (
        f"Context parameter {parameter.key!r} must be {parameter.accepts}; got 'bogus value!'. "
        f"Fix: cdk synth -c {parameter.key}={parameter.example}"
    )


@pytest.mark.parametrize("parameter", ALL_PARAMETERS, ids=lambda parameter: parameter.key)
def test_the_fix_each_message_suggests_is_itself_valid(parameter):
    settings_from_context({parameter.key: parameter.example})


@pytest.mark.parametrize(
    ("key", "bad", "good"),
    [
        ("stack_name", "1lnn", "Lnn-Dev2"),
        ("stack_name", "lnn_dev", "a" * 128),
        ("architecture", "aarch64", "arm64"),
        ("memory_size", "127", "128"),
        ("memory_size", "10241", "10240"),
        ("memory_size", "1.5", "2048"),
        ("memory_size", True, 512),
        ("timeout", "0", "1"),
        ("timeout", "901", "899"),
        ("notification_email", "ops@localhost", "first.last+lnn@example.co.uk"),
        ("log_retention_days", "8", "3653"),
        ("log_retention_days", "0", "1"),
        ("billing_mode", "PAY_PER_REQUEST", "on_demand"),
        ("removal_policy", "snapshot", "destroy"),
        ("reserved_concurrency", "0", "1"),
        ("reserved_concurrency", "10001", "10000"),
        ("max_running_runs", "0", "1"),
        ("max_running_runs", "10001", "10000"),
        ("max_running_runs", "", "3"),
        ("watchdog_rate_minutes", "0", "1440"),
        ("invocation_alarm_threshold", "0", "1"),
        ("epochs", "0", "1"),
        ("learning_rate", "0", "1e-3"),
        ("learning_rate", "nan", "0.1"),
        ("learning_rate", "-0.1", 2),
        ("neurons", "20,,1", "20, 7, 5, 1"),
        ("neurons", "", "30,10,5,1"),
        ("activations", "relu;sigmoid", "tanh,tanh,tanh,sigmoid"),
        ("granularity", "step", "auto"),
        ("init", "xavier", "lecun"),
        ("seed", "-1", str(MAX_SEED)),
        ("seed", str(MAX_SEED + 1), "0"),
        ("batch_size", "0", "1"),
        ("batch_size", "1.5", 64),
        ("shuffle_seed", "-1", str(MAX_SEED)),
        ("optimizer", "sgd", "momentum"),
        ("beta", "1", "0"),
        ("beta1", "-0.1", "0.5"),
        ("beta2", "1.5", 0.99),
        ("epsilon", "0", "1"),
        ("l2", "-1", "0"),
        ("l2", "inf", "0.7"),
        ("threshold", "0", "1e-4"),
        ("threshold", "nan", 0.5),
        ("eval_every", "-1", "0"),
        ("eval_every", "1.5", 5),
    ],
)
def test_bounds_and_formats(key, bad, good):
    assert error_of({key: bad}).startswith(f"Context parameter {key!r} must be")
    settings_from_context({key: good})


def test_the_stall_time_must_exceed_the_function_timeout():
    assert error_of({"timeout": "900", "stall_minutes": "15"}) == (
        "Context parameter 'stall_minutes' must be longer than the function timeout (900 s, from 'timeout'); "
        "got '15'. Fix: cdk synth -c stall_minutes=16"
    )
    settings_from_context({"timeout": "900", "stall_minutes": "16"})


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        ({"neurons": "20,1"}, "layers is 2 but 2 neurons and 4 activations are given"),
        ({"activations": "relu,relu,relu,relu"}, "activations.layer4 'relu' is unknown"),
        ({"activations": "relu,relu,relu,softmax"}, "a softmax output needs at least 2 neurons"),
        ({"activations": "relu,magic,relu,sigmoid"}, "activations.layer2 'magic' is unknown"),
    ],
)
def test_training_defaults_that_do_not_make_a_valid_network_are_rejected_by_the_engine_rules(context, problem):
    message = error_of(context)
    assert message.startswith("Context parameters for the training defaults do not make a valid network: ")
    assert problem in message
    assert message.endswith("Fix: cdk synth -c neurons=20,7,5,1 -c activations=relu,relu,relu,sigmoid")


def test_workers_are_a_default_with_a_granularity_that_admits_them():
    for granularity in ("epoch", "auto"):
        _, training = settings_from_context({"workers": "4", "granularity": granularity})
        assert training.workers == 4 and '"workers":4' in training.to_json()
    assert error_of({"workers": "4"}) == (
        "Context parameters for the training defaults do not agree: workers 4 needs granularity epoch or auto: a round "
        "of shard workers computes whole forward and backward passes; give one of them, or workers 1 for granularity "
        "layer. "
        "Fix: cdk synth -c workers=4 -c granularity=epoch"
    )


def test_a_network_error_is_named_as_such_whatever_the_workers():
    message = error_of({"workers": "4", "neurons": "8,3", "activations": "relu,sigmoid"})
    assert message.startswith("Context parameters for the training defaults do not make a valid network: ")


def test_default_workers_must_fit_the_reserved_concurrency():
    assert error_of({"workers": "8", "granularity": "epoch", "reserved_concurrency": "4"}) == (
        "Context parameter 'workers' (8) is more than 'reserved_concurrency' (4): the launcher would refuse every run "
        "that keeps this default. Fix: cdk synth -c workers=4 or -c reserved_concurrency=8"
    )
    settings_from_context({"workers": "8", "granularity": "epoch", "reserved_concurrency": "none"})


def test_an_unknown_parameter_is_an_error_with_a_suggestion():
    assert error_of({"memorysize": "2048"}).startswith(
        "Unknown context parameter 'memorysize'; did you mean 'memory_size'? known parameters: stack_name, "
    )


def test_the_cdk_own_context_keys_are_left_alone():
    settings_from_context(
        {
            "cli-telemetry": False,
            "acknowledged-issue-numbers": [1],
            "@aws-cdk/aws-lambda:recognizeLayerVersion": True,
            "aws:cdk:bundling-stacks": [],
            "availability-zones:account=1:region=us-east-1": ["us-east-1a"],
        }
    )


def test_training_defaults_are_in_the_lnn_parameters_json_format():
    training = TrainingDefaults.from_context({"seed": "7"})
    assert json.loads(training.to_json()) == {**DEFAULT_TRAINING, "seed": 7}


def test_docs_describe_every_parameter_and_their_example_is_valid():
    docs = (PROJECT_DIR / "docs" / "deploying.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", docs, flags=re.MULTILINE))
    assert documented == set(KNOWN_KEYS)
    (command,) = re.findall(r"npx cdk deploy \\\n(.*?)```", docs, flags=re.DOTALL)  # the full example
    example = dict(pair.split("=", 1) for pair in re.findall(r"-c (\S+=\S+)", command))
    assert len(example) >= 15
    settings_from_context(example)


def test_the_training_keys_of_issue_11_are_unset_by_default_and_reach_the_launcher_when_given():
    assert json.loads(TrainingDefaults.from_context({}).to_json()) == DEFAULT_TRAINING  # unchanged for existing stacks
    context = {
        "batch_size": "64",
        "shuffle_seed": "3",
        "optimizer": "adam",
        "beta": "0.8",
        "beta1": "0.85",
        "beta2": "0.99",
        "epsilon": "1e-7",
        "l2": "0.7",
        "threshold": "0.0019",
        "eval_every": "10",
    }
    training = TrainingDefaults.from_context(context)
    expected = {
        "batch_size": 64,
        "shuffle_seed": 3,
        "optimizer": "adam",
        "beta": 0.8,
        "beta1": 0.85,
        "beta2": 0.99,
        "epsilon": 1e-7,
        "l2": 0.7,
        "threshold": 0.0019,
        "eval_every": 10,
    }
    assert json.loads(training.to_json()) == {**DEFAULT_TRAINING, **expected}
    from lnn_core.ml.config import TrainingConfig

    config = TrainingConfig.from_parameters({"data": "runs/a/data.npz"}, defaults=training.to_parameters())
    assert {key: getattr(config, key) for key in expected} == expected
    # cdk.json's JSON values, and an empty value clearing one
    json_values = TrainingDefaults.from_context({"batch_size": 32, "l2": 0, "threshold": "", "optimizer": ""})
    assert (json_values.batch_size, json_values.l2, json_values.threshold, json_values.optimizer) == (
        32,
        0.0,
        None,
        None,
    )


def test_a_training_key_out_of_the_engine_range_names_the_key_and_the_fix():
    assert error_of({"beta2": "1"}) == (
        "Context parameter 'beta2' must be a number in [0, 1) (adam); got '1'. Fix: cdk synth -c beta2=0.999"
    )
    assert error_of({"batch_size": "0"}) == (
        "Context parameter 'batch_size' must be an integer from 1 to 10000000 (or empty for the whole training set); "
        "got '0'. Fix: cdk synth -c batch_size=64"
    )
    assert error_of({"optimizer": "sgd"}).startswith("Context parameter 'optimizer' must be one of gd, momentum, adam")
