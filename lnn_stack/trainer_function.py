"""`TrainerFunction`: the TrainerLambda, which runs one training step per invocation and then invokes itself."""

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations

from lnn_stack.functions import FunctionFactory, acknowledge_async_failures
from lnn_stack.storage import RunStorage

# Every step is idempotent (exactly once in effect, keyed by run and step), so Lambda's retries are safe
# and they ride out transient errors; 2 is Lambda's maximum. An event that still fails reaches the topic.
TRAINER_RETRY_ATTEMPTS = 2
# Lambda keeps retrying a throttled event (e.g. at the reserved concurrency) this long; the longest allowed,
# since a late duplicate is harmless and the watchdog resumes a stalled run well before it expires.
TRAINER_MAX_EVENT_AGE = Duration.hours(6)


class TrainerFunction:
    """The TrainerLambda (`function`), and what the functions that start its steps need to know and be granted.

    Grants to the trainer: s3:GetObject on runs/*, s3:PutObject(Tagging) on its scratch and the model only,
    s3:DeleteObject on its scratch only, s3:ListBucket under runs/, Get/Put/UpdateItem and ConditionCheckItem (the
    epoch items transactions) on the table, sns:Publish on the topic (also its on-failure destination),
    lambda:InvokeFunction on the watchdog (a sweep trial's end kicks it). Its
    permission to invoke itself is a policy of its own (TrainerSelfInvokePolicy, see triggers.py); `grant_invoke`
    gives other functions theirs.
    """

    def __init__(
        self,
        functions: FunctionFactory,
        *,
        storage: RunStorage,
        memory_size: int,
        timeout: Duration,
        reserved_concurrency: int | None,
        watchdog_name: str,
    ) -> None:
        self.memory_size = memory_size
        self.timeout = timeout
        self.reserved_concurrency = reserved_concurrency
        self.function = functions.create(
            "TrainerLambda",
            name="trainer",
            handler="lnn_core.handlers.train",
            description="LNN trainer: one training step per invocation, then invokes itself for the next",
            environment={
                "LNN_BUCKET": storage.bucket.bucket_name,
                # a sweep trial's end kicks the watchdog, which drives the sweep (a name, not a reference: the
                # watchdog refers to the trainer, and a reference back would be a cycle)
                "LNN_WATCHDOG_FUNCTION": watchdog_name,
                **storage.environment,
            },
            memory_size=memory_size,
            timeout=timeout,
            reserved_concurrent_executions=reserved_concurrency,
            # Without ALLOW, Lambda stops a chain of self-invocations after about 16 hops (epoch 2).
            recursive_loop=lambda_.RecursiveLoop.ALLOW,
            retry_attempts=TRAINER_RETRY_ATTEMPTS,
            max_event_age=TRAINER_MAX_EVENT_AGE,
            on_failure=destinations.SnsDestination(storage.topic),
        )
        acknowledge_async_failures(
            self.function, name="trainer", failure_target="the SNS topic, which names the failed step's event and error"
        )
        # It reads a run's data and its own state, writes only its scratch and the model, deletes only scratch.
        storage.grant_read_runs(self.function)
        storage.grant_write_scratch_and_model(self.function)
        storage.grant_list_runs(self.function)
        storage.grant_items(
            self.function, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"
        )  # PutItem and ConditionCheckItem: the epoch items' TransactWriteItems
        storage.grant_publish(self.function)
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[
                    Stack.of(self.function).format_arn(
                        service="lambda",
                        resource="function",
                        resource_name=watchdog_name,
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        # The environment of a function that starts training steps (the launcher, the watchdog).
        self.invoker_environment = {"LNN_TRAINER_FUNCTION": self.function.function_name, **storage.environment}

    def capacity_environment(self, max_running_runs: int) -> dict[str, str]:
        """The environment of a function that admits runs (the launcher, and the watchdog, which starts a sweep's
        queued trials): at most this many runs at once, and the trainer's reserved concurrency (none: unreserved)."""
        return {
            "LNN_MAX_RUNNING_RUNS": str(max_running_runs),
            **(
                {"LNN_TRAINER_RESERVED_CONCURRENCY": str(self.reserved_concurrency)}
                if self.reserved_concurrency is not None
                else {}
            ),
        }

    def invoke_statement(self) -> iam.PolicyStatement:
        """lambda:InvokeFunction on the trainer alone."""
        return iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.function.function_arn])

    def grant_invoke(self, function: lambda_.Function) -> None:
        """Lets `function` start a training step: `invoke_statement` in its role's policy."""
        function.add_to_role_policy(self.invoke_statement())
