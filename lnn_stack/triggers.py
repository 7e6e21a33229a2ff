"""`Triggers`: what invokes the functions asynchronously: the trainer itself, uploads, a schedule."""

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from lnn_stack.storage import RUNS_PREFIX
from lnn_stack.trainer_function import TrainerFunction

# EventBridge's delivery to the launcher and the watchdog: retried this often and this long, then the DLQ.
RULE_RETRY_ATTEMPTS = 4
RULE_MAX_EVENT_AGE = Duration.hours(2)


class Triggers:
    """Under `scope`: TrainerSelfInvokePolicy (the trainer may invoke itself), the rule that launches a run when
    its parameters.json is uploaded (`launch_rule`) and the watchdog's schedule (`watchdog_rule`).

    Grants: lambda:InvokeFunction on the trainer to the trainer's role; each rule's target adds the permission
    for its own rule to invoke its function, and lets its rule send to the dead-letter queue.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        trainer: TrainerFunction,
        launch_function: lambda_.IFunction,
        watchdog_function: lambda_.IFunction,
        bucket: s3.IBucket,
        dead_letter_queue: sqs.IQueue,
        watchdog_rate: Duration,
    ) -> None:
        self._dead_letter_queue = dead_letter_queue
        # Self-invocation through the role's default policy would make the function depend on a policy that
        # depends on the function: a cycle. A separate policy breaks it.
        iam.Policy(
            scope, "TrainerSelfInvokePolicy", roles=[trainer.function.role], statements=[trainer.invoke_statement()]
        )
        self.launch_rule = events.Rule(
            scope,
            "LaunchOnParametersUpload",
            description="Starts a run when runs/<run_id>/parameters.json is uploaded",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [bucket.bucket_name]},
                    "object": {"key": [{"wildcard": f"{RUNS_PREFIX}*/parameters.json"}]},
                },
            ),
            targets=[self._rule_target(launch_function)],
        )
        self.watchdog_rule = events.Rule(
            scope,
            "WatchdogSchedule",
            description="Runs the LNN watchdog, which resumes stalled runs",
            schedule=events.Schedule.rate(watchdog_rate),
            # A watchdog event older than one period is superseded by the next one: to the DLQ with it.
            targets=[self._rule_target(watchdog_function, max_event_age=watchdog_rate)],
        )

    def _rule_target(
        self, function: lambda_.IFunction, *, max_event_age: Duration = RULE_MAX_EVENT_AGE
    ) -> targets.LambdaFunction:
        """EventBridge retries a delivery that fails (throttled, function missing), then puts it in the DLQ."""
        return targets.LambdaFunction(
            function,
            dead_letter_queue=self._dead_letter_queue,
            retry_attempts=RULE_RETRY_ATTEMPTS,
            max_event_age=max_event_age,
        )
