"""`lnn predict` on a deployed stack's run: its inputs (rows of a data file, or images as the model saw its
examples) and its answers (a class and its probability, or values; as lines or CSV, with the figures against the
file's labels). On this machine from the run's model.npz, or with --remote by the stack's PredictLambda."""

import csv
import json
import sys
from typing import Any

import numpy as np
from rich.console import Console

from lnn_cli.deployed_stack import DeployedStack, model_bytes
from lnn_cli.inputs import read_prediction_data
from lnn_core.errors import LnnInputError
from lnn_core.ml import network
from lnn_core.predictor import SYNC_PAYLOAD_LIMIT, Model, predicted_probability, rows_that_fit
from lnn_core.protocol import ending


def command_predict(args, stack: DeployedStack, console: Console) -> int:
    """`lnn predict RUN_ID --data FILE | --image FILE... [--remote] [--csv]`: on this machine from model.npz, or with
    --remote by the stack's PredictLambda; both run `Model.answer`, so both give the same numbers."""
    run = stack.run(args.run_id)
    published = ending.published_model(run)
    if published is None:
        raise LnnInputError(ending.no_model(run))
    model_key = published[0]
    images = getattr(args, "image", None)
    if bool(images) == bool(getattr(args, "data", None)):
        raise LnnInputError("give the examples to predict with either --data FILE or --image FILE ...")
    if getattr(args, "remote", False):
        described = predictor_answer(stack.invoke_predictor, {"run_id": args.run_id, "describe": True})
        return predict_with(
            args, described, lambda X: predict_remote(stack.invoke_predictor, args.run_id, X, described), console
        )
    model = Model.from_npz(model_bytes(stack, model_key), key=model_key)
    return predict_with(args, model.describe(), lambda X: model.answer(X, run_id=args.run_id), console)


def the_model(args, described: dict[str, Any] | None = None) -> str:
    """The model `lnn predict` uses, in words: a run's (and the epoch it is from, when the model says), or a model
    file's (--model)."""
    if not getattr(args, "run_id", None):
        return f"the model {args.model}"
    epoch = (described or {}).get("model_epoch")
    return f"the model of run {args.run_id}" + (f" from epoch {epoch}" if epoch is not None else "")


def predict_with(args, described: dict[str, Any], answer_for, console: Console) -> int:
    """Read --image or --data as rows of X, check them against the model `described`, show `answer_for(X)`."""
    images = getattr(args, "image", None)
    if images:
        X, y, names = image_rows(images, described.get("example_shape"), model=the_model(args)), None, list(images)
    else:
        X, y = read_prediction_data(args.data, label_column=getattr(args, "label_column", None))
        names = None
    if X.shape[1] != described["features"]:
        source = "the images" if images else args.data
        raise LnnInputError(
            f"{source}: X has {X.shape[1]} features but {the_model(args)} takes {described['features']}"
        )
    return show_answer(args, answer_for(X), described, y, names, console)


def predictor_answer(invoke, payload: dict[str, Any]) -> dict[str, Any]:
    answer = invoke(payload)
    if not isinstance(answer, dict):
        raise LnnInputError(f"the PredictLambda answered {answer!r}, not a JSON object")
    if "error" in answer:
        raise LnnInputError(f"the PredictLambda refused the request: {answer['error']}")
    return answer


def predict_remote(invoke, run_id: str, X: np.ndarray, described: dict[str, Any]) -> dict[str, Any]:
    """The PredictLambda's answer for every row of X: as many synchronous invokes as the 6 MB payloads need."""
    rows = X.tolist()
    row_bytes = [len(json.dumps(row)) + 2 for row in rows]
    # An answer row: the label (or class name) and its probabilities (or values), about 25 bytes a number.
    longest_class = max((len(name) for name in described.get("classes") or []), default=0)
    answer_row = 25 * described.get("outputs", 1) + longest_class + 30
    budget = SYNC_PAYLOAD_LIMIT - 2 * 1024
    merged: dict[str, Any] = {}
    start = 0
    while start < len(rows):
        end, size = start, 0
        while end < len(rows) and size + max(row_bytes[end], answer_row) <= budget:
            size += max(row_bytes[end], answer_row)
            end += 1
        if end == start:
            raise LnnInputError(
                f"one row of X is {row_bytes[start]:,} bytes as JSON: more than a synchronous invoke "
                f"carries ({rows_that_fit(row_bytes[start])} rows fit); predict without --remote"
            )
        answer = predictor_answer(invoke, {"run_id": run_id, "X": rows[start:end]})
        for key in ("predictions", "probabilities", "values"):
            if key in answer:
                merged.setdefault(key, []).extend(answer[key])
        merged.update(run_id=answer["run_id"], model_key=answer["model_key"])
        start = end
    return merged


def image_rows(paths: list[str], example_shape: list[int] | None, *, model: str) -> np.ndarray:
    """Images as rows of X, as the model saw its examples at training: resized to its example_shape (height, width
    [, channels]) with Pillow, uint8 scaled by 1/255, flattened."""
    from PIL import Image, UnidentifiedImageError

    if not example_shape or len(example_shape) not in (2, 3):
        raise LnnInputError(
            f"{model} was not trained on images (its model.npz has no example_shape "
            "of height x width x channels); predict with --data"
        )
    height, width = example_shape[:2]
    channels = example_shape[2] if len(example_shape) == 3 else 1
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise LnnInputError(
            f"{model} takes examples of shape {example_shape}: {channels} channels "
            "is not an image Pillow makes (1, 3 or 4)"
        )
    rows = []
    for path in paths:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(
                    image.convert(mode).resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8
                )
        except FileNotFoundError:
            raise LnnInputError(f"image {path} does not exist") from None
        except (UnidentifiedImageError, OSError) as error:
            raise LnnInputError(f"{path} is not an image Pillow can read ({error})") from None
        rows.append(pixels.reshape(-1))
    X = np.stack(rows).astype(np.float64)
    X /= 255.0  # as dataset.load_training_data scales uint8 at training
    return X


def show_answer(
    args,
    answer: dict[str, Any],
    described: dict[str, Any],
    y: np.ndarray | None,
    names: list[str] | None,
    console: Console,
) -> int:
    """One line per input (the class and its probability, or the value), or CSV; then the figures against y."""
    predictions = answer["predictions"]
    labels = names or [f"row {row}" for row in range(len(predictions))]
    if "values" in answer:
        return show_values(args, answer["values"], described, y, names, console)
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        columns, probabilities = probability_columns(answer["probabilities"], described.get("classes"))
        writer.writerow(["row" if names is None else "input", "prediction", *columns])
        for row, prediction in enumerate(predictions):
            writer.writerow([row if names is None else names[row], prediction, *map(repr, probabilities[row])])
        return 0
    for row, prediction in enumerate(predictions):
        console.print(
            f"{labels[row]}: class {prediction} (probability {predicted_probability(answer, row):.4f})",
            markup=False,
            highlight=False,
        )
    values, counts = np.unique(np.array(predictions, dtype=object).astype(str), return_counts=True)
    summary = ", ".join(f"class {value}: {count}" for value, count in zip(values, counts))
    console.print(
        f"{len(predictions)} predictions with {the_model(args, described)} ({summary})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if y is not None:
        indices = [described["classes"].index(p) if described.get("classes") else p for p in predictions]
        console.print(f"accuracy against the file's labels: {float(np.mean(np.array(indices) == y)):.1%}")
    return 0


def probability_columns(probabilities: list, classes: list[str] | None) -> tuple[list[str], list[list[float]]]:
    """The CSV's probability columns, each named by its class (p_<class>), and their values per row: one per class
    for softmax; for a sigmoid output, the probability of class 1 (the second class name)."""
    if probabilities and isinstance(probabilities[0], list):
        names = classes or [str(index) for index in range(len(probabilities[0]))]
        return [f"p_{name}" for name in names], [[float(p) for p in row] for row in probabilities]
    return [f"p_{(classes or ['0', '1'])[1]}"], [[float(p)] for p in probabilities]


def show_values(
    args, values: list, described: dict[str, Any], y: np.ndarray | None, names: list[str] | None, console: Console
) -> int:
    """A regression model's predicted values, and its RMSE and R² (metrics.rmse's and r2's formulas) against y."""
    AL = np.array(values, dtype=np.float64).reshape(len(values), -1).T  # (k, m), as the network's output
    outputs = AL.shape[0]
    if y is not None and (1 if y.ndim == 1 else y.shape[1]) != outputs:
        raise LnnInputError(
            f"{args.data}: y holds {1 if y.ndim == 1 else y.shape[1]} target(s) per example but "
            f"{the_model(args)} predicts {outputs}"
        )
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        first = "row" if names is None else "input"
        writer.writerow(
            [first, *(["prediction"] if outputs == 1 else [f"prediction_{index}" for index in range(1, outputs + 1)])]
        )
        for row, value in enumerate(values):
            writer.writerow(
                [row if names is None else names[row], *(repr(float(item)) for item in np.atleast_1d(value))]
            )
        return 0
    for row, value in enumerate(values):
        label = f"row {row}" if names is None else names[row]
        console.print(
            f"{label}: {' '.join(repr(float(item)) for item in np.atleast_1d(value))}", markup=False, highlight=False
        )
    console.print(
        f"{len(values)} predictions with {the_model(args, described)} (regression, {outputs} value(s) each)",
        soft_wrap=True,
    )
    if y is not None:
        Y = network.targets(y, "linear", outputs)
        D = AL - Y
        residual = ((Y - AL) ** 2).sum(axis=1)
        total = ((Y - Y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        constant = total == 0
        scores = np.where(constant, np.where(residual == 0, 1.0, 0.0), 1.0 - residual / np.where(constant, 1.0, total))
        console.print(
            f"against the file's targets: RMSE {float(np.sqrt((D * D).mean())):.6g}, R² {float(scores.mean()):.4f}"
        )
    return 0
