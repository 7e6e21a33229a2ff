"""`LaunchFunction`: the LaunchLambda, which validates a run's parameters and data, then starts the trainer."""

from aws_cdk import aws_lambda_destinations as destinations

from lnn_stack.functions import FunctionFactory, acknowledge_async_failures
from lnn_stack.settings.training import TrainingDefaults
from lnn_stack.storage import RunStorage
from lnn_stack.trainer_function import TrainerFunction


class LaunchFunction:
    """The LaunchLambda (`function`), with the trainer's memory size and timeout.

    Grants: s3:GetObject on runs/*, s3:ListBucket under runs/, Get/Put/UpdateItem on the table, Query on the
    runs-by-status index (it counts the running runs against LNN_MAX_RUNNING_RUNS), sns:Publish on the topic
    (also its on-failure destination), lambda:InvokeFunction on the trainer.
    """

    def __init__(
        self,
        functions: FunctionFactory,
        *,
        storage: RunStorage,
        trainer: TrainerFunction,
        training_defaults: TrainingDefaults,
        max_running_runs: int,
        reserved_concurrency: int | None,
    ) -> None:
        self.function = functions.create(
            "LaunchLambda",
            name="launcher",
            handler="lnn_core.handlers.launch",
            description="LNN launcher: validates a run's parameters and data, then starts the trainer",
            environment={
                "LNN_BUCKET": storage.bucket.bucket_name,
                "LNN_TRAINING_DEFAULTS": training_defaults.to_json(),
                # The launcher refuses a run beyond this many running ones, one whose round of shard workers could
                # not all run at once, and one that cannot fit the memory.
                **trainer.capacity_environment(max_running_runs),
                "LNN_TRAINER_MEMORY_MB": str(trainer.memory_size),
                **trainer.invoker_environment,
            },
            memory_size=trainer.memory_size,  # it loads the training data to validate it, as the trainer does
            timeout=trainer.timeout,
            reserved_concurrent_executions=reserved_concurrency,
            # A launch that fails (bad parameters.json) is otherwise visible only in the logs.
            on_failure=destinations.SnsDestination(storage.topic),
        )
        acknowledge_async_failures(
            self.function,
            name="launcher",
            failure_target="the SNS topic, which names the failed launch's event and error",
        )
        storage.grant_read_runs(self.function)
        storage.grant_list_runs(self.function)
        storage.grant_items(self.function, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        storage.grant_query_running_runs(self.function)
        storage.grant_publish(self.function)
        trainer.grant_invoke(self.function)
