"""The Flask app behind `lnn serve`: one page and a small JSON API over a deployed stack.

    GET  /                          the page (templates/index.html, static/lnn.js, static/lnn.css)
    GET  /api/runs                  the runs and their status
    GET  /api/sweeps/<sweep_id>     a sweep: its trials ranked, each with its cost curve, and its totals
    GET  /api/runs/<run_id>         one run: status, its cost curve (and test curve), final figures, its model;
                                    ?after=N: the curve of the epochs after N only (the page's polls)
    POST /api/runs/<run_id>/predict an image (multipart field `image`) or a row (field `row`): class and probability

It listens on 127.0.0.1 only and talks to nothing but the stack (its DynamoDB table, bucket and functions, found
by the stack's CloudFormation outputs, at AWS_ENDPOINT_URL when that is set). Every error is JSON:
{"error": "one sentence"}, never a stack trace.
"""

import errno
import logging
import math
import os
import socket
import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from lnn_cli.deployed_stack import DeployedStack
from lnn_cli.run_commands import run_cost
from lnn_cli.web import predict, sweeps
from lnn_core.errors import LnnInputError
from lnn_core.protocol import end_message, ending
from lnn_core.sweep.record import sweep_of_trial_id

log = logging.getLogger("lnn.serve")
HOST = "127.0.0.1"
MAX_UPLOAD_BYTES = 8 * 2**20
DEPLOYED_PREDICTOR = "PredictLambda (deployed)"  # its physical name is the page's hover text (title)
CURVE_FIGURES = ("epoch", "cost", "test_cost")  # what the page shows of an epoch: its point on the two curves


def create_app(stack: DeployedStack) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    app.json.sort_keys = False
    lock = threading.Lock()  # boto3 resources are not thread-safe: one request at a time talks to the stack
    state: dict[str, Any] = {}

    def predictor() -> str | None:
        if "predict_function" not in state:
            state["predict_function"] = predict.predict_function(stack)
        return state["predict_function"]

    @app.before_request
    def local_hosts_only():
        """Refuse a request whose Host is not this machine (a DNS-rebinding page cannot read the stack)."""
        host = (request.host or "").rsplit(":", 1)[0].strip("[]")
        if host not in ("127.0.0.1", "localhost"):
            return error(f"this server answers 127.0.0.1 and localhost only, not {host!r}", 400)
        return None

    @app.get("/")
    def index():
        return render_template("index.html", stack=stack.outputs.stack_name, bucket=stack.outputs.bucket)

    @app.get("/api/runs")
    def runs():
        with lock:
            records = stack.table.list_runs()
        records.sort(key=lambda run: run.get("created_at", ""), reverse=True)
        return jsonify({"stack": stack.outputs.stack_name, "runs": [summary(run) for run in records]})

    @app.get("/api/runs/<run_id>")
    def run(run_id: str):
        after = epoch_after(request.args.get("after"))
        with lock:
            record = stack.run(run_id)
            epochs = stack.table.epoch_figures(record, after=after, attributes=CURVE_FIGURES)
            model = None
            if ending.published_model(record):
                model = predict.load_model(stack, record).describe()
            function = predictor()
        final = record.get("final") or {}
        return jsonify(
            {
                **summary(record),
                "after": after,
                "curve": [
                    {
                        "epoch": item["epoch"],
                        "cost": number(item.get("cost")),
                        "test_cost": number(item.get("test_cost")),
                    }
                    for item in epochs
                ],
                "figures": page_figures(final),
                "final": {
                    key: final.get(key)
                    for key in ("cost", "seconds", "invocations", "model_key", "warnings")
                    if key in final
                },
                "model": model,
                "model_epoch": record.get("model_epoch"),
                "predictor": {"label": DEPLOYED_PREDICTOR, "title": f"the PredictLambda {function}"}
                if function
                else {
                    "label": "computed by `lnn serve` from the run's model.npz (metrics.predict_proba)",
                    "title": f"s3://{stack.outputs.bucket}",
                },
            }
        )

    @app.get("/api/sweeps/<sweep_id>")
    def sweep(sweep_id: str):
        with lock:
            return jsonify(sweeps.sweep_payload(stack, sweep_id, local=bool(os.environ.get("AWS_ENDPOINT_URL"))))

    @app.post("/api/runs/<run_id>/predict")
    def predict_run(run_id: str):
        upload = request.files.get("image")
        text = request.form.get("row", "")
        if upload is not None and upload.filename == "" and not upload.content_length:
            upload = None  # the form's empty file field
        if upload is None and not text.strip():
            raise LnnInputError("choose an image or paste a row of numbers, then press Predict")
        with lock:
            record = stack.run(run_id)
            model = predict.load_model(stack, record)
            if upload is not None:
                row = predict.row_from_image(upload.read(), upload.filename or "the upload", model)
                given = f"image {upload.filename}"
            else:
                row = predict.row_from_text(text, model)
                given = f"a row of {row.shape[1]} numbers"
            function = predictor()
            note = None
            if function:
                try:
                    result, source = predict.predict_remote(stack, function, model, row), DEPLOYED_PREDICTOR
                except (LnnInputError, ClientError, BotoCoreError, ValueError) as failure:
                    log.warning("PredictLambda %s failed (%s); computing from model.npz", function, failure)
                    note = f"{short(failure)}; computed here instead"
                    function = None
            if not function:
                result = predict.predict_here(model, row)
                source = f"computed by `lnn serve` from s3://{stack.outputs.bucket}/{model.key} (metrics.predict_proba)"
        return jsonify(
            {
                **result,
                "run_id": run_id,
                "input": given,
                "source": source,
                "note": note,
                "source_title": f"the PredictLambda {function}" if function else f"s3://{stack.outputs.bucket}",
            }
        )

    @app.errorhandler(LnnInputError)
    def input_error(failure: LnnInputError):
        message = str(failure)
        return error(message, 404 if message.startswith(("no run named", "no sweep named")) else 400)

    @app.errorhandler(ClientError)
    def aws_error(failure: ClientError):
        details = failure.response.get("Error", {})
        log.warning("AWS error: %s", failure)
        return error(f"the stack answered {details.get('Code', 'an error')}: {details.get('Message', '')}".strip(), 502)

    @app.errorhandler(HTTPException)
    def http_error(failure: HTTPException):
        if failure.code == 413:
            return error(f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MB; choose a smaller image", 413)
        return error(f"{failure.name}: {failure.description}", failure.code or 500)

    @app.errorhandler(Exception)
    def unexpected(failure: Exception):
        log.exception("lnn serve: unexpected error")  # the trace goes to the terminal, not to the page
        return error(
            f"lnn serve failed unexpectedly ({type(failure).__name__}); the terminal running it has the details", 500
        )

    return app


def error(message: str, status: int):
    response = jsonify({"error": message})
    response.status_code = status
    return response


def short(failure: Exception) -> str:
    text = str(failure)
    return text if len(text) <= 160 else text[:157] + "..."


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def epoch_after(text: str | None) -> int:
    """The `after` of a run request: the last epoch the page has (0: none)."""
    if text is None:
        return 0
    if not text.isdigit():
        raise LnnInputError(f"after must be an epoch number (0 or more); got {text[:20]!r}")
    return int(text)


def percent(fraction: float) -> str:
    """A fraction as a percentage with as many decimals as keep it below 100 % (and above 0 %) unless it is exactly
    that: 0.99996 is "99.996 %", never "100.0 %"."""
    if fraction in (0, 1):
        return f"{fraction * 100:.0f} %"
    for decimals in range(1, 10):
        text = f"{fraction * 100:.{decimals}f}"
        if 0 < float(text) < 100:
            return f"{text} %"
    return f"{fraction * 100!r} %"


def page_figures(final: dict[str, Any]) -> list[list[str]]:
    """`end_message.figures` as the page shows them: percentages by `percent`."""
    shown = dict(end_message.figures(final))
    for key, label, style in end_message.FIGURES:
        if style.endswith("%}") and final.get(key) is not None:
            shown[label] = percent(final[key])
    return [[label, text] for label, text in shown.items()]


def summary(run: dict[str, Any]) -> dict[str, Any]:
    config = run.get("config") or {}
    final = run.get("final") or {}
    cost = final.get("cost", run.get("last_cost"))
    # `training_cost`, not `cost`: a run's `cost` is its estimate in dollars (pricing.run_cost), when it has one
    return {
        "run_id": run["run_id"],
        "status": run["status"],
        "epoch": run.get("progress_epoch", 0),
        "epochs": config.get("epochs"),
        "granularity": config.get("granularity"),
        "training_cost": number(cost),
        "created_at": run.get("created_at"),
        "finished_at": run.get("finished_at"),
        "reason": run.get("reason"),
        "eval_every": config.get("eval_every"),
        "cost": run_cost(run),
        "model_epoch": run.get("model_epoch"),
        "sweep": sweep_of_trial_id(run["run_id"]),  # the page groups the runs table by it
    }


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound and listening on host:port; a port in use is an `LnnInputError` (werkzeug's own bind prints
    its advice and exits 1)."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug: a port in TIME_WAIT is free
    try:
        listening.bind((host, port))
        listening.listen(128)
    except OSError as failure:
        listening.close()
        taken = " by another program" if failure.errno == errno.EADDRINUSE else ""
        raise LnnInputError(
            f"cannot listen on {host}:{port} ({failure.strerror}{taken}); choose another port with "
            f"--port, or --port 0 for a free one"
        ) from None
    return listening


def command_serve(args, stack: DeployedStack, console) -> int:
    """`lnn serve [--port N] [--stack NAME]`: serve the page on 127.0.0.1 until Ctrl-C."""
    app = create_app(stack)
    listening = listening_socket(HOST, args.port)
    try:
        server = make_server(HOST, args.port, app, threaded=True, fd=listening.fileno())
    finally:
        listening.close()  # the server holds its own duplicate
    logging.basicConfig(level=logging.WARNING, format="lnn serve: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    console.print(f"serving stack {stack.outputs.stack_name} on [bold]http://{HOST}:{server.port}/[/] (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.server_close()
    return 0
