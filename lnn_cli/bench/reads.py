"""`python -m lnn_cli.bench.reads` (`make bench-reads`): how long reading a 1,000-epoch run takes, on a stack that
is up.

Against the stack the environment points at (`lnn up`, then paste its lines; or AWS), it writes a run of the demo
network (30-20-7-5-1 on the breast cancer data, relu, relu, relu, sigmoid; test figures every 10 epochs) through
`RunTable` as a trainer does: a run record, then 1,000 epoch items of the real shape (`results.epoch_item`, with
the end-of-epoch weights and biases as DynamoDB lists; stored, as every epoch, as a figures item and a weights
item), then a commit that ends it. Training those epochs would take
minutes and measure nothing more. Then it times each read the way a person makes it, each `--repeats` times:

  lnn results RUN      the command, its output to /dev/null
  lnn status RUN, lnn runs
  page, first request  GET /api/runs/<id>, as the page asks when a run is selected
  page, next poll      GET /api/runs/<id>?after=<last epoch>, as the page polls a running run (code that has no
                       `after` answers it with the whole run)

and reports the median seconds, the DynamoDB requests and the bytes of their answers (HTTP bodies) per call. It
only uses `lnn_cli.main.main`, `lnn_cli.deployed_stack.DeployedStack` and `lnn_cli.web.app.create_app`, so the same
file measures an older checkout that has them: copy it out of the package and run it with that checkout first on
PYTHONPATH.
"""

import argparse
import contextlib
import json
import os
import sys
import time
from statistics import median
from typing import Any

import boto3
import numpy as np
from botocore.httpsession import URLLib3Session

from lnn_cli.deployed_stack import DeployedStack
from lnn_cli.main import main as lnn
from lnn_cli.web import DEFAULT_PORT
from lnn_cli.web.app import HOST, create_app
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import now
from lnn_core.ml import network
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol.results import epoch_item

DEMO_NETWORK = {
    "neurons": [20, 7, 5, 1],
    "activations": ["relu", "relu", "relu", "sigmoid"],
    "learning_rate": 0.3,
    "init": "he",
    "seed": 1,
    "granularity": "epoch",
    "eval_every": 10,
}
FEATURES, EXAMPLES = 30, 455  # the demo data, lnn_cli/data/breast_cancer.npz
TARGET_SECONDS = 1.0


class DynamoTraffic:
    """DynamoDB requests and the bytes of their answers, counted at botocore's HTTP layer (every session)."""

    def __init__(self):
        self.requests, self.bytes, self._send = 0, 0, URLLib3Session.send

    def __enter__(self):
        traffic, send = self, self._send

        def counted(session, request):
            response = send(session, request)
            if request.headers.get("X-Amz-Target", b"").startswith(b"DynamoDB_"):
                traffic.requests += 1
                traffic.bytes += len(response.content)  # DynamoDB answers are not streamed: reading them is safe
            return response

        URLLib3Session.send = counted
        return self

    def __exit__(self, *exc):
        URLLib3Session.send = self._send


def write_run(table: RunTable, run_id: str, epochs: int) -> dict[str, Any]:
    """A succeeded run of the demo network with `epochs` epoch items, written as a trainer writes them."""
    parameters = {**DEMO_NETWORK, "epochs": epochs, "data": f"runs/{run_id}/data.npz"}
    config = TrainingConfig.from_parameters(parameters)
    record = {
        "status": "running",
        "config": config.to_parameters(),
        "features": FEATURES,
        "examples": EXAMPLES,
        "committed_step": 0,
        "invoked_step": 0,
        "step_bound": epochs + 1,
        "progress_epoch": 0,
        "invocations": 0,
        "resumes": 0,
        "stop_requested": False,
        "notified": True,
        "created_at": now(),
        "created_epoch_seconds": time.time(),
        "updated_at": now(),
    }
    table.create_run(run_id, record, token="bench")
    rng = np.random.default_rng(0)
    params = network.init_params([FEATURES, *config.neurons], config.init, config.seed)
    items = []
    for epoch in range(1, epochs + 1):
        params = {name: value + 0.001 * rng.standard_normal(value.shape) for name, value in params.items()}
        cost = 0.7 * np.exp(-epoch / 150) + 0.05 + 0.002 * rng.random()
        evaluated = {"test_cost": cost * 1.1, "test_accuracy": 0.9 + 0.05 * epoch / epochs} if epoch % 10 == 0 else None
        items.append(epoch_item(config, epoch, float(cost), params, now(), evaluated))
    assert table.put_epoch_items(run_id, items, step=1)
    final = {
        "cost": items[-1]["cost"],
        "train_accuracy": 0.9868,
        "test_accuracy": 0.9737,
        "epochs": epochs,
        "seed": config.seed,
        "seconds": 600.0,
        "invocations": epochs + 1,
        "model_key": None,
    }
    assert table.transition(
        run_id,
        seen_step=0,
        new_step=epochs + 1,
        fields={
            "progress_epoch": epochs,
            "last_cost": items[-1]["cost"],
            "status": "succeeded",
            "final": final,
            "finished_at": now(),
        },
    )
    return table.get_run(run_id)


def measure(call, repeats: int) -> dict[str, Any]:
    """Median seconds, and the DynamoDB requests and answer bytes of one call (the last)."""
    seconds = []
    for _ in range(repeats):
        with DynamoTraffic() as traffic:
            started = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - started)
    return {
        "seconds": round(median(seconds), 3),
        "all_seconds": [round(s, 3) for s in seconds],
        "dynamodb_requests": traffic.requests,
        "dynamodb_bytes": traffic.bytes,
    }


def quietly(argv: list[str]) -> None:
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        code = lnn(argv)
    if code not in (0, 1):
        raise SystemExit(f"`lnn {' '.join(argv)}` exited {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnn_cli.bench.reads", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="LnnStack")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-id", help="measure this run (written before) instead of writing a new one")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    session = boto3.Session()
    stack = DeployedStack(session, args.stack)
    table = stack.ports.table
    run_id = args.run_id or f"bench-reads-{int(time.time())}"
    if not args.run_id:
        started = time.perf_counter()
        write_run(table, run_id, args.epochs)
        print(
            f"wrote run {run_id}: {args.epochs} epoch items in {time.perf_counter() - started:.1f} s", file=sys.stderr
        )
    run = table.get_run(run_id)
    client = create_app(stack).test_client()
    page = {"base_url": f"http://{HOST}:{DEFAULT_PORT}"}

    def page_request(url: str):
        response = client.get(url, **page)
        assert response.status_code == 200, response.get_data(as_text=True)

    last = run["progress_epoch"]
    page_request(f"/api/runs/{run_id}")  # the app's first request also looks up the PredictLambda: not counted
    figures = {
        "lnn results": measure(lambda: quietly(["results", run_id, "--stack", args.stack]), args.repeats),
        "lnn status": measure(lambda: quietly(["status", run_id, "--stack", args.stack]), args.repeats),
        "lnn runs": measure(lambda: quietly(["runs", "--stack", args.stack]), args.repeats),
        "page, first request": measure(lambda: page_request(f"/api/runs/{run_id}"), args.repeats),
        "page, next poll": measure(lambda: page_request(f"/api/runs/{run_id}?after={last}"), args.repeats),
    }
    report = {"run_id": run_id, "epochs": last, "runs_in_stack": len(table.run_ids()), "reads": figures}
    print(f"run {run_id}: {last} epochs; {report['runs_in_stack']} runs in stack {args.stack}")
    print(f"{'read':<22}{'seconds':>9}{'DynamoDB requests':>19}{'bytes read':>13}")
    for name, row in figures.items():
        mark = "" if row["seconds"] <= TARGET_SECONDS else f"  (over {TARGET_SECONDS:g} s)"
        print(f"{name:<22}{row['seconds']:>9.3f}{row['dynamodb_requests']:>19}{row['dynamodb_bytes']:>13,}{mark}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
