"""PredictLambda: a trained model's predictions for rows of X, answered synchronously.

Request (a direct `Invoke` with InvocationType=RequestResponse, or the JSON body of a Function URL request, maybe
base64-encoded): {"run_id": "...", "X": [[...], ...]}, examples as rows. Answer: `predictions` (class labels, or
class names when the model has `classes`; for a regression, the values), `probabilities` (P(class 1) per row for a
sigmoid output, one row of C per example for softmax) or `values` (a regression's linear output), `run_id`,
`model_key` and `model_epoch` (the epoch the model is from: a stopped run's model is of its last committed epoch).
{"run_id": "...", "describe": true} answers what the model takes and gives (features, example_shape, classes,
output, model_epoch) without predicting: what a client needs to resize an image.

A bad request answers {"error": "..."}: one sentence, never a stack trace. The math is `metrics.predict_proba` and
`metrics.predict`, which `lnn predict` also runs on the client (`Model`), so both give the same numbers.

The model is cached per warm container by S3 key and ETag: each request HEADs model.npz and GETs it (IfMatch the
ETag just read) only when its ETag changed. The role may read runs/*/model.npz only; ListBucket under runs/ tells
an unknown run (no key under runs/<run_id>/) from a run without a model.
"""

import base64
import binascii
import io
import json
import math
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lnn_core.aws.ports import S3ObjectStore
from lnn_core.aws.sdk import IoCounter
from lnn_core.errors import LnnInputError, RunFailure
from lnn_core.ml import metrics, network
from lnn_core.ml.config import check_run_id
from lnn_core.ml.dataset import is_zip
from lnn_core.protocol.layout import model_key

# Lambda's limit for a synchronous invoke's request and response, and a Function URL's: 6 MB each.
SYNC_PAYLOAD_LIMIT = 6_291_456
ENVELOPE_BYTES = 1024  # room for the run id, the keys and the brackets around the rows
MAX_CACHED_MODELS = 8  # per warm container, least recently used first out


@dataclass(frozen=True)
class Model:
    """A model.npz: W1, b1, ... activations, and optionally classes and example_shape (see steps.descriptions), and
    the epoch it is from (a finished run's last, or a stopped run's last committed; absent in older models)."""

    params: dict[str, np.ndarray]
    activations: tuple[str, ...]
    classes: tuple[str, ...] | None = None
    example_shape: tuple[int, ...] | None = None
    key: str = ""
    etag: str | None = None
    epoch: int | None = None

    @classmethod
    def from_npz(cls, data: bytes, *, key: str = "", etag: str | None = None) -> "Model":
        """Raise `LnnInputError` for bytes that are not a model LNN wrote."""
        if not is_zip(data):
            raise LnnInputError(
                f"the model {key or 'model.npz'} is not a readable LNN model (not an .npz archive); an LNN model is "
                "the model.npz a run writes"
            )
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            activations = tuple(str(name) for name in arrays.pop("activations"))
            arrays.pop("config", None)
            epoch = arrays.pop("epoch", None)
            classes = arrays.pop("classes", None)
            shape = arrays.pop("example_shape", None)
            layers = len(activations)
            params = {f"{kind}{layer}": arrays[f"{kind}{layer}"] for layer in range(1, layers + 1) for kind in "Wb"}
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
            raise LnnInputError(f"the model {key or 'model.npz'} is not a readable LNN model ({error})") from None
        return cls(
            params=params,
            activations=activations,
            classes=None if classes is None else tuple(str(name) for name in classes),
            example_shape=None if shape is None else tuple(int(size) for size in shape),
            key=key,
            etag=etag,
            epoch=None if epoch is None else int(epoch),
        )

    @property
    def features(self) -> int:
        return int(self.params["W1"].shape[1])

    @property
    def output(self) -> str:
        return self.activations[-1]

    @property
    def regression(self) -> bool:
        return self.output in network.REGRESSION_OUTPUTS

    def describe(self) -> dict[str, Any]:
        return {
            "model_key": self.key,
            "model_epoch": self.epoch,
            "features": self.features,
            "output": self.output,
            "outputs": int(self.params[f"W{len(self.activations)}"].shape[0]),
            "classes": list(self.classes) if self.classes is not None else None,
            "example_shape": list(self.example_shape) if self.example_shape is not None else None,
        }

    def check(self, X: np.ndarray, *, run_id: str = "") -> None:
        if X.shape[1] != self.features:
            of = f"the model of run {run_id}" if run_id else "the model"
            raise LnnInputError(f"X rows have {X.shape[1]} features but {of} takes {self.features}")

    def answer(self, X: np.ndarray, *, run_id: str = "") -> dict[str, Any]:
        """The predictions for X (m, n0), float64 rows, as JSON-ready lists (the predictor's answer)."""
        self.check(X, run_id=run_id)
        activations = list(self.activations)
        if self.regression:
            values = metrics.predict(self.params, X, activations).tolist()
            return {"predictions": values, "values": values}
        probabilities = metrics.predict_proba(self.params, X, activations)
        labels = metrics.predict(self.params, X, activations)
        predictions: list = labels.tolist()
        if self.classes is not None:
            predictions = [self.classes[label] for label in predictions]
        return {"predictions": predictions, "probabilities": probabilities.tolist()}


def predicted_probability(answer: dict[str, Any], row: int) -> float | None:
    """The probability of row's predicted class in an answer (None for a regression)."""
    if "probabilities" not in answer:
        return None
    probability = answer["probabilities"][row]
    if isinstance(probability, list):
        return float(max(probability))
    return float(probability) if probability > 0.5 else 1.0 - float(probability)


def rows_that_fit(row_bytes: float, limit: int = SYNC_PAYLOAD_LIMIT) -> int:
    """How many rows of `row_bytes` bytes (JSON) a synchronous payload carries."""
    return max(0, int((limit - ENVELOPE_BYTES) // max(1.0, row_bytes)))


def too_many_rows(rows: int, row_bytes: float, what: str) -> LnnInputError:
    fit = rows_that_fit(row_bytes)
    return LnnInputError(
        f"the {what} of {rows} rows of about {math.ceil(row_bytes)} bytes each exceeds the {SYNC_PAYLOAD_LIMIT:,}-byte "
        f"limit of a synchronous invoke; send at most {fit:,} rows of this width per request"
    )


def parse_rows(X: Any) -> np.ndarray:
    """X as a float64 (m, n0) array: a non-empty list of equal-length, non-empty lists of numbers, all finite."""
    if not isinstance(X, list) or not X:
        raise LnnInputError("X must be a non-empty list of rows, each a list of numbers")
    width = None
    for index, row in enumerate(X):
        if not isinstance(row, list) or not row:
            raise LnnInputError(f"X row {index} is not a non-empty list of numbers")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise LnnInputError(f"X rows must have equal length; row 0 has {width} values, row {index} has {len(row)}")
        if not all(type(value) in (int, float) for value in row):  # bool, str, None, dict are not numbers
            bad = next(value for value in row if type(value) not in (int, float))
            raise LnnInputError(f"X row {index} holds {bad!r}, which is not a number")
    array = np.array(X, dtype=np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        row, column = map(int, np.argwhere(~finite)[0])
        raise LnnInputError(f"X holds NaN or an infinite value (row {row}, column {column}); send finite numbers only")
    return array


class NoModel(LnnInputError):
    """An unknown run, or a run without a model: the URL answers 404."""


class ModelCache:
    """Models by S3 key, each with the ETag it was read at: a HEAD per request, a GET only when the ETag changed."""

    def __init__(self, store: S3ObjectStore, *, capacity: int = MAX_CACHED_MODELS):
        self._store, self._capacity = store, capacity
        self._models: OrderedDict[str, Model] = OrderedDict()
        self.loads = 0  # GETs of a model, for tests and logs

    def model(self, run_id: str) -> Model:
        key = model_key(run_id)
        head = self._store.head(key)
        if head is None:
            self._models.pop(key, None)
            raise NoModel(self._missing(run_id))
        etag, _ = head
        cached = self._models.get(key)
        if cached is not None and cached.etag == etag:
            self._models.move_to_end(key)
            return cached
        try:
            data = self._store.get_bytes(key, etag=etag, cache=False)
        except RunFailure:  # replaced or deleted between the HEAD and the GET: the next request reads it again
            raise LnnInputError(
                f"the model of run {run_id} changed while it was read; send the request again"
            ) from None
        self.loads += 1
        model = Model.from_npz(data, key=key, etag=etag)
        self._models[key] = model
        self._models.move_to_end(key)
        while len(self._models) > self._capacity:
            self._models.popitem(last=False)
        return model

    def _missing(self, run_id: str) -> str:
        store = self._store
        store._counter.count("s3")
        listed = store._client.list_objects_v2(Bucket=store.bucket, Prefix=f"runs/{run_id}/", MaxKeys=1)
        if listed.get("KeyCount", 0):
            return (
                f"run {run_id} has no model yet (model.npz is written when the run succeeds, or is stopped after "
                f"its first epoch); see `lnn status {run_id}`"
            )
        return f"there is no run {run_id} in this stack's bucket; `lnn runs` lists the runs"


@dataclass
class PredictorPorts:
    """What the predictor touches: the bucket (model.npz only) and its request counter."""

    store: S3ObjectStore
    counter: IoCounter = field(default_factory=IoCounter)
    clock: Callable[[], float] = time.time


class Predictor:
    """The PredictLambda's logic: one request in, one answer out (see the module's docstring)."""

    def __init__(self, ports: PredictorPorts, *, logger):
        self.ports, self.log = ports, logger
        self.cache = ModelCache(ports.store)

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        started = time.monotonic()
        url = _is_url_event(event)
        run_id, status = None, 200
        loads_before = self.cache.loads
        try:
            request = _url_body(event) if url else _json_text(event) if isinstance(event, str) else event
            if not isinstance(request, dict):
                raise LnnInputError('the request must be a JSON object like {"run_id": "...", "X": [[...]]}')
            run_id = check_run_id(request.get("run_id")) if "run_id" in request else None
            if run_id is None:
                raise LnnInputError('the request lacks "run_id", the run whose model predicts')
            answer = self._answer(request, run_id, event)
        except NoModel as error:
            answer, status = {"error": str(error), "run_id": run_id}, 404
        except LnnInputError as error:
            answer, status = {"error": str(error)}, 400
            if run_id is not None:
                answer["run_id"] = run_id
        log = self.log.info if status == 200 else self.log.warning
        log(
            "predict",
            extra={
                "run_id": run_id,
                "status": status,
                "error": answer.get("error"),
                "rows": len(answer.get("predictions", [])),
                "model_loaded": self.cache.loads > loads_before,
                "duration_ms": round((time.monotonic() - started) * 1000, 2),
            },
        )
        if url:
            return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(answer)}
        return answer

    def _answer(self, request: dict[str, Any], run_id: str, event: Any) -> dict[str, Any]:
        if request.get("describe") is True and "X" not in request:
            return {"run_id": run_id, **self.cache.model(run_id).describe()}
        if "X" not in request:
            raise LnnInputError('the request lacks "X", the rows to predict (a list of lists of numbers)')
        X = parse_rows(request["X"])
        request_bytes = _size(event)
        if request_bytes > SYNC_PAYLOAD_LIMIT:
            raise too_many_rows(len(X), request_bytes / len(X), "request")
        model = self.cache.model(run_id)
        answer = {
            **model.answer(X, run_id=run_id),
            "run_id": run_id,
            "model_key": model.key,
            "model_epoch": model.epoch,
        }
        answer_bytes = len(json.dumps(answer))
        if answer_bytes > SYNC_PAYLOAD_LIMIT:
            raise too_many_rows(len(X), answer_bytes / len(X), "answer")
        return answer


def _is_url_event(event: Any) -> bool:
    """A Function URL (payload format 2.0) event: the request in `body`, a string."""
    return isinstance(event, dict) and "requestContext" in event and "http" in event.get("requestContext", {})


def _url_body(event: dict[str, Any]) -> Any:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise LnnInputError("the request body is marked base64 but is not base64-encoded UTF-8 text") from None
    return _json_text(body)


def _json_text(body: str) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise LnnInputError(f"the request body is not JSON ({error.msg} at character {error.pos})") from None


def _size(event: Any) -> int:
    """The request's size in bytes, as Lambda counts the payload (a Function URL's: its body)."""
    if _is_url_event(event):
        return len(event.get("body") or "")
    return len(json.dumps(event).encode())
