"""Context parameters: `cdk deploy -c key=value` (or cdk.json, or CDK_CONTEXT_JSON), validated at synth time.

Every key is parsed here into typed, frozen settings that app.py hands down as keyword arguments; nothing
else reads context. A bad value stops synth with one `ContextError` that names the key, the value and
what the key accepts. `-c` values arrive as strings, cdk.json values as JSON, so parsers take both.
"""

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from lnn_core.config import GRANULARITIES, MAX_BATCH_SIZE, MAX_EPOCHS, MAX_SEED, TrainingConfig
from lnn_core.errors import LnnInputError
from lnn_core.network import INITIALIZERS
from lnn_core.optimizers import OPTIMIZERS

# The retention periods CloudWatch Logs accepts, in days (RetentionDays has no numeric value to look up).
LOG_RETENTION_DAYS = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}
ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}
BILLING_MODES = {"on_demand": dynamodb.BillingMode.PAY_PER_REQUEST, "provisioned": dynamodb.BillingMode.PROVISIONED}
REMOVAL_POLICIES = {"retain": RemovalPolicy.RETAIN, "destroy": RemovalPolicy.DESTROY}
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The launcher validates one run at a time; 2 absorbs a pair of uploads (a throttled event is retried).
LAUNCHER_RESERVED_CONCURRENCY = 2
STACK_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")  # CloudFormation's rule for stack names
# LNN's keys are snake_case words; CDK's own keys have ':', '@', '/' or '-' (e.g. "cli-telemetry").
LNN_KEY_SHAPE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class ContextError(ValueError):
    """A context parameter is invalid. The message alone tells the user what to fix."""


@dataclass(frozen=True)
class Parameter:
    """One context key: its default, its parser (raises ValueError/TypeError) and, for the message, what it accepts."""

    key: str
    default: Any
    parse: Callable[[Any], Any]
    accepts: str
    example: str

    def read(self, context: Mapping[str, Any]) -> Any:
        raw = context.get(self.key)
        if raw is None:
            return self.default
        try:
            return self.parse(raw)
        except (ValueError, TypeError):
            raise self.error(raw) from None

    def error(self, raw: Any, accepts: str | None = None, example: str | None = None) -> ContextError:
        return ContextError(
            f"Context parameter {self.key!r} must be {accepts or self.accepts}; got {raw!r}. "
            f"Fix: cdk synth -c {self.key}={example or self.example}"
        )


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise TypeError(raw)
        value = int(raw)  # "abc" and "1.5" raise ValueError
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return parse


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Unset by an empty string too, so that `-c key=` clears a value set in cdk.json."""
    return lambda raw: None if raw == "" else parse(raw)


def _or_none(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An explicit "none" (or an empty string) lifts a limit that is on by default."""
    return lambda raw: None if raw in ("", "none") else parse(raw)


def _choice(options: Mapping[str, Any] | tuple[str, ...]) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if raw not in options:
            raise ValueError(raw)
        return raw

    return parse


def _log_retention(raw: Any) -> int:
    days = _integer(1, max(LOG_RETENTION_DAYS))(raw)
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(raw)
    return days


def _pattern(pattern: re.Pattern) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if not isinstance(raw, str) or not pattern.match(raw):
            raise ValueError(raw)
        return raw

    return parse


def _positive_number(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise TypeError(raw)
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(raw)
    return value


def _comma_list(item: Callable[[Any], Any]) -> Callable[[Any], tuple]:
    """"20,7,5,1" from -c, or [20, 7, 5, 1] from cdk.json."""

    def parse(raw: Any) -> tuple:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or not items:
            raise TypeError(raw)
        return tuple(item(value.strip() if isinstance(value, str) else value) for value in items)

    return parse


def _boolean(raw: Any) -> bool:
    """true/false from -c (a string) or cdk.json (a JSON boolean)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ValueError(raw)


def _word(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.isalpha():
        raise ValueError(raw)
    return raw


STACK_NAME = Parameter("stack_name", "LnnStack", _pattern(STACK_NAME_PATTERN),
                       "a CloudFormation stack name: a letter, then up to 127 letters, digits or '-'", "LnnStack")
ARCHITECTURE = Parameter("architecture", "arm64", _choice(ARCHITECTURES), "one of arm64, x86_64", "x86_64")
MEMORY_SIZE = Parameter("memory_size", 1024, _integer(128, 10240), "an integer from 128 to 10240 (MB)", "1024")
TIMEOUT = Parameter("timeout", 300, _integer(1, 900), "an integer from 1 to 900 (seconds)", "300")
NOTIFICATION_EMAIL = Parameter("notification_email", None, _optional(_pattern(EMAIL_PATTERN)),
                               "an e-mail address (or empty for none)", "ops@example.com")
LOG_RETENTION = Parameter("log_retention_days", 7, _log_retention,
                          "one of the CloudWatch Logs retention periods: "
                          + ", ".join(map(str, LOG_RETENTION_DAYS)) + " (days)", "7")
BILLING_MODE = Parameter("billing_mode", "on_demand", _choice(BILLING_MODES), "one of on_demand, provisioned",
                         "provisioned")
REMOVAL_POLICY = Parameter("removal_policy", "retain", _choice(REMOVAL_POLICIES), "one of retain, destroy", "destroy")
RESERVED_CONCURRENCY = Parameter("reserved_concurrency", 20, _or_none(_integer(1, 10000)),
                                 "an integer from 1 to 10000, or none (no reserved concurrency)", "20")
MAX_RUNNING_RUNS = Parameter("max_running_runs", 10, _integer(1, 10000), "an integer from 1 to 10000 (runs)", "10")
STALL_MINUTES = Parameter("stall_minutes", 15, _integer(1, 1440), "an integer from 1 to 1440 (minutes)", "15")
WATCHDOG_RATE = Parameter("watchdog_rate_minutes", 5, _integer(1, 1440), "an integer from 1 to 1440 (minutes)", "5")
ALARM_THRESHOLD = Parameter("invocation_alarm_threshold", 5000, _integer(1, 10_000_000),
                            "an integer from 1 to 10000000 (trainer invocations in 5 minutes)", "5000")
PREDICT_URL = Parameter("predict_url", False, _boolean,
                        "true or false (a Function URL with AWS_IAM auth for the PredictLambda)", "true")

EPOCHS = Parameter("epochs", 100, _integer(1, MAX_EPOCHS), f"an integer from 1 to {MAX_EPOCHS}", "100")
LEARNING_RATE = Parameter("learning_rate", 0.0075, _positive_number, "a number greater than 0", "0.0075")
NEURONS = Parameter("neurons", (20, 7, 5, 1), _comma_list(_integer(1, 1_000_000)),
                    "positive integers separated by commas, one per layer", "20,7,5,1")
ACTIVATIONS = Parameter("activations", ("relu", "relu", "relu", "sigmoid"), _comma_list(_word),
                        "activation names separated by commas, one per layer", "relu,relu,relu,sigmoid")
GRANULARITY = Parameter("granularity", "layer", _choice(GRANULARITIES), "one of " + ", ".join(GRANULARITIES), "layer")
INIT = Parameter("init", "lecun", _choice(INITIALIZERS), "one of " + ", ".join(INITIALIZERS), "he")
SEED = Parameter("seed", None, _optional(_integer(0, MAX_SEED)),
                 f"an integer from 0 to {MAX_SEED} (or empty for a random seed per run)", "42")


def _training_value(key: str, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`convert` the raw value, then check it with the engine's own rules (`TrainingConfig.from_parameters`)."""

    def parse(raw: Any) -> Any:
        if isinstance(raw, bool):
            raise TypeError(raw)
        value = convert(raw)
        try:
            TrainingConfig.from_parameters({"epochs": 1, "learning_rate": 0.1, "neurons": [1], "activations": ["sigmoid"],
                                            "data": "runs/defaults/data.npz", key: value})
        except LnnInputError:
            raise ValueError(raw) from None
        return value

    return parse


def _whole(raw: Any) -> int:
    if not isinstance(raw, (int, str)):
        raise TypeError(raw)
    return int(raw)


def _number(raw: Any) -> float:
    if not isinstance(raw, (int, float, str)):
        raise TypeError(raw)
    return float(raw)


BATCH_SIZE = Parameter("batch_size", None, _optional(_training_value("batch_size", _whole)),
                       f"an integer from 1 to {MAX_BATCH_SIZE} (or empty for the whole training set)", "64")
SHUFFLE_SEED = Parameter("shuffle_seed", None, _optional(_training_value("shuffle_seed", _whole)),
                         f"an integer from 0 to {MAX_SEED} (or empty to use the seed)", "7")
OPTIMIZER = Parameter("optimizer", None, _optional(_choice(OPTIMIZERS)), "one of " + ", ".join(OPTIMIZERS), "adam")
BETA = Parameter("beta", None, _optional(_training_value("beta", _number)), "a number in [0, 1) (momentum)", "0.9")
BETA1 = Parameter("beta1", None, _optional(_training_value("beta1", _number)), "a number in [0, 1) (adam)", "0.9")
BETA2 = Parameter("beta2", None, _optional(_training_value("beta2", _number)), "a number in [0, 1) (adam)", "0.999")
EPSILON = Parameter("epsilon", None, _optional(_training_value("epsilon", _number)), "a number in (0, 1] (adam)", "1e-8")
L2 = Parameter("l2", None, _optional(_training_value("l2", _number)), "a number from 0 to 1000000 (L2 lambda)", "0.7")
THRESHOLD = Parameter("threshold", None, _optional(_training_value("threshold", _number)),
                      "a number greater than 0 (or empty for no early stop)", "0.0019")
EVAL_EVERY = Parameter("eval_every", None, _optional(_training_value("eval_every", _whole)),
                       f"an integer from 0 to {MAX_EPOCHS} (epochs; 0 never)", "10")
WORKERS = Parameter("workers", None, _optional(_training_value("workers", _whole)),
                    "an integer from 1 to 256 (data-parallel shard workers per update; more than 1 needs granularity epoch or auto)", "1")

# Setting field -> context parameter, in field order.
DEPLOYMENT_PARAMETERS = {
    "stack_name": STACK_NAME,
    "architecture": ARCHITECTURE,
    "memory_size": MEMORY_SIZE,
    "timeout_seconds": TIMEOUT,
    "notification_email": NOTIFICATION_EMAIL,
    "log_retention_days": LOG_RETENTION,
    "billing_mode": BILLING_MODE,
    "removal_policy": REMOVAL_POLICY,
    "reserved_concurrency": RESERVED_CONCURRENCY,
    "max_running_runs": MAX_RUNNING_RUNS,
    "stall_minutes": STALL_MINUTES,
    "watchdog_rate_minutes": WATCHDOG_RATE,
    "invocation_alarm_threshold": ALARM_THRESHOLD,
    "predict_url": PREDICT_URL,
}
TRAINING_PARAMETERS = {
    "epochs": EPOCHS,
    "learning_rate": LEARNING_RATE,
    "neurons": NEURONS,
    "activations": ACTIVATIONS,
    "granularity": GRANULARITY,
    "init": INIT,
    "seed": SEED,
    "batch_size": BATCH_SIZE,
    "shuffle_seed": SHUFFLE_SEED,
    "optimizer": OPTIMIZER,
    "beta": BETA,
    "beta1": BETA1,
    "beta2": BETA2,
    "epsilon": EPSILON,
    "l2": L2,
    "threshold": THRESHOLD,
    "eval_every": EVAL_EVERY,
    "workers": WORKERS,
}
# Training defaults left unset (None) are not in LNN_TRAINING_DEFAULTS: the engine's own default applies.
OPTIONAL_TRAINING_KEYS = ("batch_size", "shuffle_seed", "optimizer", "beta", "beta1", "beta2", "epsilon", "l2", "threshold",
                          "eval_every", "workers")
KNOWN_KEYS = tuple(parameter.key for parameter in (*DEPLOYMENT_PARAMETERS.values(), *TRAINING_PARAMETERS.values()))


@dataclass(frozen=True)
class DeploymentSettings:
    """How the stack is deployed. Defaults are those of an empty context."""

    stack_name: str = STACK_NAME.default
    architecture: str = ARCHITECTURE.default
    memory_size: int = MEMORY_SIZE.default
    timeout_seconds: int = TIMEOUT.default
    notification_email: str | None = NOTIFICATION_EMAIL.default
    log_retention_days: int = LOG_RETENTION.default
    billing_mode: str = BILLING_MODE.default
    removal_policy: str = REMOVAL_POLICY.default
    reserved_concurrency: int | None = RESERVED_CONCURRENCY.default
    max_running_runs: int = MAX_RUNNING_RUNS.default
    stall_minutes: int = STALL_MINUTES.default
    watchdog_rate_minutes: int = WATCHDOG_RATE.default
    invocation_alarm_threshold: int = ALARM_THRESHOLD.default
    predict_url: bool = PREDICT_URL.default

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "DeploymentSettings":
        settings = cls(**{field: parameter.read(context) for field, parameter in DEPLOYMENT_PARAMETERS.items()})
        if settings.stall_minutes * 60 <= settings.timeout_seconds:
            # A step may legitimately run for the whole timeout; the watchdog must not take it for a stall.
            raise STALL_MINUTES.error(
                context.get(STALL_MINUTES.key, STALL_MINUTES.default),
                f"longer than the function timeout ({settings.timeout_seconds} s, from 'timeout')",
                example=str(settings.timeout_seconds // 60 + 1),
            )
        return settings

    @property
    def unsubscribed_warning(self) -> str | None:
        """The one line synth prints when nobody will read what reaches the topic."""
        if self.notification_email:
            return None
        return (
            "Warning: no notification_email: run results, failed events and alarms reach the SNS topic, but nobody "
            "is subscribed to it. Fix: cdk deploy -c notification_email=you@example.com"
        )

    @property
    def launcher_reserved_concurrency(self) -> int | None:
        """The launcher's small reservation, lifted with the trainer's (reserved_concurrency=none)."""
        return None if self.reserved_concurrency is None else LAUNCHER_RESERVED_CONCURRENCY

    @property
    def lambda_architecture(self) -> lambda_.Architecture:
        return ARCHITECTURES[self.architecture]

    @property
    def timeout(self) -> Duration:
        return Duration.seconds(self.timeout_seconds)

    @property
    def log_retention(self) -> logs.RetentionDays:
        return LOG_RETENTION_DAYS[self.log_retention_days]

    @property
    def table_billing_mode(self) -> dynamodb.BillingMode:
        return BILLING_MODES[self.billing_mode]

    @property
    def data_removal_policy(self) -> RemovalPolicy:
        return REMOVAL_POLICIES[self.removal_policy]

    @property
    def stall_after(self) -> Duration:
        return Duration.minutes(self.stall_minutes)

    @property
    def watchdog_rate(self) -> Duration:
        return Duration.minutes(self.watchdog_rate_minutes)


@dataclass(frozen=True)
class TrainingDefaults:
    """The training parameters a run gets unless its parameters.json overrides them."""

    epochs: int = EPOCHS.default
    learning_rate: float = LEARNING_RATE.default
    neurons: tuple[int, ...] = NEURONS.default
    activations: tuple[str, ...] = ACTIVATIONS.default
    granularity: str = GRANULARITY.default
    init: str = INIT.default
    seed: int | None = SEED.default
    batch_size: int | None = BATCH_SIZE.default
    shuffle_seed: int | None = SHUFFLE_SEED.default
    optimizer: str | None = OPTIMIZER.default
    beta: float | None = BETA.default
    beta1: float | None = BETA1.default
    beta2: float | None = BETA2.default
    epsilon: float | None = EPSILON.default
    l2: float | None = L2.default
    threshold: float | None = THRESHOLD.default
    eval_every: int | None = EVAL_EVERY.default
    workers: int | None = WORKERS.default

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "TrainingDefaults":
        defaults = cls(**{field: parameter.read(context) for field, parameter in TRAINING_PARAMETERS.items()})
        # The rules that relate keys (one activation per layer, valid output activation, ...) are the
        # engine's own: the launcher applies the same validation to every run.
        try:
            TrainingConfig.from_parameters({**defaults.to_parameters(), "data": "runs/defaults/data.npz"})
        except LnnInputError as error:
            raise ContextError(
                f"Context parameters for the training defaults do not make a valid network: {error}. "
                f"Fix: cdk synth -c neurons={NEURONS.example} -c activations={ACTIVATIONS.example}"
            ) from None
        return defaults

    def to_parameters(self) -> dict[str, Any]:
        """These defaults in the LNN parameters.json format (the launcher's LNN_TRAINING_DEFAULTS)."""
        return {
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "layers": len(self.neurons),
            "neurons": {f"layer{index}": count for index, count in enumerate(self.neurons, start=1)},
            "activations": {f"layer{index}": name for index, name in enumerate(self.activations, start=1)},
            "granularity": self.granularity,
            "init": self.init,
            "seed": self.seed,
            **{key: getattr(self, key) for key in OPTIONAL_TRAINING_KEYS if getattr(self, key) is not None},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_parameters(), separators=(",", ":"))


def settings_from_context(context: Mapping[str, Any]) -> tuple[DeploymentSettings, TrainingDefaults]:
    """Both settings from the app's context; raises `ContextError` on an unknown LNN-shaped key or a bad value."""
    for key in context:
        if LNN_KEY_SHAPE.match(key) and key not in KNOWN_KEYS:
            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ContextError(f"Unknown context parameter {key!r}; {hint}known parameters: {', '.join(KNOWN_KEYS)}")
    return DeploymentSettings.from_context(context), TrainingDefaults.from_context(context)
