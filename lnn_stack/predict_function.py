"""`PredictFunction`: the PredictLambda, which answers rows of X with a run's model, synchronously."""

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_

from lnn_stack.functions import FunctionFactory
from lnn_stack.nag import acknowledge
from lnn_stack.storage import RunStorage

# It answers one synchronous request (at most 6 MB of rows) from a model cached in its container.
PREDICT_MEMORY_MB = 1024
PREDICT_TIMEOUT = Duration.seconds(30)


class PredictFunction:
    """The PredictLambda (`function`) and, with `url=True`, its Function URL (`url`, else None), AWS_IAM auth only.

    Grants: s3:GetObject on runs/*/model.npz only, and s3:ListBucket under runs/, which turns a missing model's
    403 into the 404 that tells "no such run" from "no model yet".
    """

    def __init__(self, functions: FunctionFactory, *, storage: RunStorage, memory_size: int, url: bool) -> None:
        self.function = functions.create(
            "PredictLambda",
            name="predictor",
            handler="lnn_core.handlers.predict",
            description="LNN predictor: a run's model.npz answers rows of X synchronously",
            environment={"LNN_BUCKET": storage.bucket.bucket_name},
            memory_size=memory_size,
            timeout=PREDICT_TIMEOUT,
        )
        # Signed requests only (SigV4, lambda:InvokeFunctionUrl): never an open URL.
        self.url = self.function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM) if url else None
        acknowledge(
            self.function.node.default_child,
            "Serverless::Serverless-LambdaDLQ",
            "The predictor is only invoked synchronously (RequestResponse, or its Function URL): the caller "
            "receives every error in the response, and a DeadLetterConfig would never receive an event.",
        )
        storage.grant_read_models(self.function)
        storage.grant_list_runs(self.function)
