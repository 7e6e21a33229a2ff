"""`DeploymentSettings`: how the stack is deployed (functions, table, bucket, guard rails), from context parameters."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from lnn_core.aws.usage import DEFAULT_MEMORY_MB
from lnn_core.launch.budget import LAMBDA_MAX_MEMORY_MB
from lnn_core.launch.launcher import (
    DEFAULT_MAX_RUNNING_RUNS,
    DEFAULT_TRAINER_RESERVED_CONCURRENCY,
)
from lnn_stack.settings.context import (
    Parameter,
    boolean,
    choice,
    integer,
    matching,
    optional,
    or_none,
)

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


def _log_retention(raw: Any) -> int:
    days = integer(1, max(LOG_RETENTION_DAYS))(raw)
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(raw)
    return days


STACK_NAME = Parameter(
    "stack_name",
    "LnnStack",
    matching(STACK_NAME_PATTERN),
    "a CloudFormation stack name: a letter, then up to 127 letters, digits or '-'",
    "LnnStack",
)
ARCHITECTURE = Parameter("architecture", "arm64", choice(ARCHITECTURES), "one of arm64, x86_64", "x86_64")
MEMORY_SIZE = Parameter(
    "memory_size", DEFAULT_MEMORY_MB, integer(128, LAMBDA_MAX_MEMORY_MB), "an integer from 128 to 10240 (MB)", "1024"
)
TIMEOUT = Parameter("timeout", 300, integer(1, 900), "an integer from 1 to 900 (seconds)", "300")
NOTIFICATION_EMAIL = Parameter(
    "notification_email",
    None,
    optional(matching(EMAIL_PATTERN)),
    "an e-mail address (or empty for none)",
    "ops@example.com",
)
LOG_RETENTION = Parameter(
    "log_retention_days",
    7,
    _log_retention,
    "one of the CloudWatch Logs retention periods: " + ", ".join(map(str, LOG_RETENTION_DAYS)) + " (days)",
    "7",
)
BILLING_MODE = Parameter(
    "billing_mode", "on_demand", choice(BILLING_MODES), "one of on_demand, provisioned", "provisioned"
)
REMOVAL_POLICY = Parameter("removal_policy", "retain", choice(REMOVAL_POLICIES), "one of retain, destroy", "destroy")
RESERVED_CONCURRENCY = Parameter(
    "reserved_concurrency",
    DEFAULT_TRAINER_RESERVED_CONCURRENCY,
    or_none(integer(1, 10000)),
    "an integer from 1 to 10000, or none (no reserved concurrency)",
    "20",
)
MAX_RUNNING_RUNS = Parameter(
    "max_running_runs", DEFAULT_MAX_RUNNING_RUNS, integer(1, 10000), "an integer from 1 to 10000 (runs)", "10"
)
STALL_MINUTES = Parameter("stall_minutes", 15, integer(1, 1440), "an integer from 1 to 1440 (minutes)", "15")
WATCHDOG_RATE = Parameter("watchdog_rate_minutes", 5, integer(1, 1440), "an integer from 1 to 1440 (minutes)", "5")
ALARM_THRESHOLD = Parameter(
    "invocation_alarm_threshold",
    5000,
    integer(1, 10_000_000),
    "an integer from 1 to 10000000 (trainer invocations in 5 minutes)",
    "5000",
)
PREDICT_URL = Parameter(
    "predict_url", False, boolean, "true or false (a Function URL with AWS_IAM auth for the PredictLambda)", "true"
)

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
