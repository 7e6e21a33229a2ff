"""Predictions for the page: an uploaded image or a pasted row, through the stack.

With a PredictLambda in the stack's outputs, the row goes to that function (a synchronous invoke); otherwise the
run's model.npz is read from the stack's bucket and `metrics.predict_proba` computes the answer here. Every
problem a person can fix is an `LnnInputError` with one sentence that says what to do.
"""

import io
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from botocore.config import Config
from botocore.exceptions import ClientError

from lnn_cli.deployed_stack import DeployedStack, model_params
from lnn_core.errors import LnnInputError
from lnn_core.ml import metrics, network
from lnn_core.protocol import ending

PREDICT_OUTPUT = "PredictFunctionName"  # the stack output naming the PredictLambda, when the stack has one
SYNC_INVOKE = Config(
    read_timeout=40, connect_timeout=10, retries={"max_attempts": 2, "mode": "standard"}
)  # > its 30 s timeout
MAX_IMAGE_PIXELS = 50_000_000  # a decompression bomb is refused, not decoded


@dataclass(frozen=True)
class Model:
    """A run's trained model as read from its model.npz."""

    run_id: str
    key: str
    params: dict[str, np.ndarray]
    activations: list[str]
    classes: list[str] | None
    example_shape: tuple[int, ...] | None

    @property
    def features(self) -> int:
        return int(self.params["W1"].shape[1])

    @property
    def regression(self) -> bool:
        return self.activations[-1] in network.REGRESSION_OUTPUTS

    def describe(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "example_shape": list(self.example_shape) if self.example_shape else None,
            "classes": self.classes,
            "output": self.activations[-1],
            "regression": self.regression,
            "model_key": self.key,
        }


def load_model(stack: DeployedStack, run: dict[str, Any]) -> Model:
    published = ending.published_model(run)
    if published is None:
        raise LnnInputError(ending.no_model(run))
    key = published[0]
    params = model_params(stack, key)  # read afresh: a resumed run's ending replaces it
    activations = [str(name) for name in params.pop("activations")]
    params.pop("config", None)
    params.pop("epoch", None)
    classes = [str(name) for name in params.pop("classes").tolist()] if "classes" in params else None
    shape = tuple(int(size) for size in params.pop("example_shape").tolist()) if "example_shape" in params else None
    return Model(run["run_id"], key, params, activations, classes, shape)


def row_from_text(text: str, model: Model) -> np.ndarray:
    """A pasted row: numbers separated by commas, spaces or new lines, as many as the model's features."""
    tokens = [token for token in re.split(r"[,;\s]+", text.strip()) if token]
    if not tokens:
        raise LnnInputError(f"paste a row of {model.features} numbers, or choose an image")
    values = []
    for position, token in enumerate(tokens, start=1):
        try:
            value = float(token)
        except ValueError:
            raise LnnInputError(
                f"value {position} of the row, {token[:40]!r}, is not a number; paste numbers only"
            ) from None
        if not math.isfinite(value):
            raise LnnInputError(f"value {position} of the row is {token!r}; every value must be a finite number")
        values.append(value)
    if len(values) != model.features:
        raise LnnInputError(
            f"the row holds {len(values)} numbers but the model of run {model.run_id} takes "
            f"{model.features} features; paste {model.features}"
        )
    return np.asarray(values, dtype=np.float64).reshape(1, -1)


def row_from_image(data: bytes, filename: str, model: Model) -> np.ndarray:
    """An uploaded image, resized to the model's example_shape (height, width[, channels]) and scaled by 1/255."""
    from PIL import Image, UnidentifiedImageError  # Pillow: installed with matplotlib

    shape = model.example_shape
    if not shape or len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
        raise LnnInputError(
            f"the model of run {model.run_id} was not trained on images (its data had no image "
            f"example_shape); paste a row of {model.features} numbers instead"
        )
    if not data:
        raise LnnInputError(f"{filename or 'the upload'} is empty; choose an image file (PNG, JPEG, ...)")
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = "L" if len(shape) == 2 or shape[2] == 1 else ("RGB" if shape[2] == 3 else "RGBA")
            resized = image.convert(mode).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        raise LnnInputError(
            f"{filename or 'the upload'} is not an image Pillow can read; upload a PNG, JPEG, GIF or BMP file"
        ) from None
    pixels = np.asarray(resized, dtype=np.float64) / 255.0
    return pixels.reshape(1, -1)


def predict_here(model: Model, row: np.ndarray) -> dict[str, Any]:
    """The answer from the model.npz with `metrics.predict_proba`."""
    output = metrics.predict_proba(model.params, row, model.activations)
    return answer(model, np.asarray(output)[0])


def answer(model: Model, output: Any) -> dict[str, Any]:
    """One example's output (a probability, a probability per class, or the regression values) as the page shows it."""
    output = np.asarray(output, dtype=np.float64)
    if model.regression:
        return {"kind": "regression", "values": [float(value) for value in np.atleast_1d(output)]}
    if output.ndim == 0 or output.size == 1:  # sigmoid: the probability of class 1
        p1 = float(output.reshape(-1)[0])
        label, probability = (1, p1) if p1 > 0.5 else (0, 1.0 - p1)
    else:
        label = int(np.argmax(output))
        probability = float(output[label])
    name = model.classes[label] if model.classes and label < len(model.classes) else str(label)
    return {"kind": "class", "label": label, "class": name, "probability": probability}


def predict_function(stack: DeployedStack) -> str | None:
    """The PredictLambda's name from the stack outputs, when the stack has one."""
    name = getattr(stack.outputs, "predict_function", None)
    if name:
        return name
    try:
        described = stack.session.client("cloudformation").describe_stacks(StackName=stack.outputs.stack_name)
    except ClientError:
        return None
    outputs = {output["OutputKey"]: output["OutputValue"] for output in described["Stacks"][0].get("Outputs") or []}
    return outputs.get(PREDICT_OUTPUT)


def predict_remote(stack: DeployedStack, function: str, model: Model, row: np.ndarray) -> dict[str, Any]:
    """The answer from the PredictLambda (RequestResponse). A function error is the function's message."""
    payload = {"run_id": model.run_id, "X": row.tolist()}
    client = stack.session.client("lambda", config=SYNC_INVOKE)
    response = client.invoke(
        FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
    )
    try:
        body = json.loads(response["Payload"].read() or b"null")
    except ValueError:
        raise LnnInputError(f"the PredictLambda {function} answered something that is not JSON") from None
    if response.get("FunctionError") or not isinstance(body, dict):
        message = body.get("errorMessage") if isinstance(body, dict) else None
        raise LnnInputError(f"the PredictLambda {function} failed: {message or 'no answer'}")
    if body.get("error"):
        raise LnnInputError(str(body["error"]))
    for key in ("probabilities", "probability", "predictions", "values"):
        if key in body:
            return answer(model, np.asarray(body[key], dtype=np.float64).reshape(row.shape[0], -1)[0].squeeze())
    raise LnnInputError(f"the PredictLambda {function} answered without probabilities: {sorted(body)[:6]}")
