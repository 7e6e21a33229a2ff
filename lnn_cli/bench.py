"""`make bench`: plain NumPy against `lnn local` at each granularity, on the classic LNN job and a mini-batch job.

The classic job: a 12288-20-7-5-1 network (relu, relu, relu, sigmoid) on 209 seeded random 64x64x3 "images", 2500
epochs of full-batch gradient descent. The mini-batch job: a 100-32-16-1 network (relu, relu, sigmoid) on 4,000
seeded synthetic examples of 100 features, 30 epochs of adam in batches of 64 (63 batches an epoch).

Plain NumPy is `training.train_reference` with the job's options, on as many BLAS threads as each container; each
LNN run is timed from its launch to its finish (the run record's `seconds`), on one emulator deployed once
(reported on its own line). Layer granularity runs fewer epochs and is compared per epoch. `--job` picks one job
(all by default). The mini-batch job runs plain NumPy and auto three times, alternating, and reports the medians.

The workers job (issue 12): 60,000 seeded synthetic 784-feature uint8 examples (like MNIST's pixels) in 10 classes,
784-128-64-10 (relu, relu, softmax), full-batch gd at granularity epoch, run with `workers` K = 1 and K = 2 at
concurrency 2 and 1 BLAS thread per container, on an emulator of its own whose stack is deployed with context
memory_size=1769 (the launcher's memory check refuses this job at the default 1024 MB). Its time per epoch is the
median interval between consecutive epoch items' `finished_at` (launch, epoch 1's data loading and finish
excluded); it reports the speedup (and against plain NumPy's serial shards, the same arithmetic), requests and S3
bytes per round, the busiest step, the costs' agreement, and a projection of time and cost per epoch on AWS for
K = 1 .. 64 (`aws_projection`).
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

import numpy as np
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from lnn_core import training

from .cloud.deploy import PROJECT_DIR, deploy_to_emulator
from .cloud.emulator import running_emulator
from .cloud.local import run_local
from .main import add_runtime_options

NEURONS = [20, 7, 5, 1]
ACTIVATIONS = ["relu", "relu", "relu", "sigmoid"]
LEARNING_RATE = 0.0075
SEED = 1
AUTO_TARGET = 1.3  # auto may take at most this many times plain NumPy's time per epoch

MINIBATCH_NEURONS = [32, 16, 1]
MINIBATCH_ACTIVATIONS = ["relu", "relu", "sigmoid"]
MINIBATCH_OPTIONS = {"learning_rate": 0.001, "batch_size": 64, "optimizer": "adam"}
GRANULARITIES = ("auto", "epoch", "layer")

WORKERS_NEURONS = [128, 64, 10]
WORKERS_ACTIVATIONS = ["relu", "relu", "softmax"]
WORKERS_OPTIONS = {"learning_rate": 0.5, "optimizer": "gd", "granularity": "epoch"}
WORKERS_MEMORY_MB = 1769  # one vCPU; the job's step needs about 1,540 MB (lnn_core.budget), refused at 1024
WORKERS_CONCURRENCY = 2  # containers per function: the shards of K = 2 run side by side on the 2 cores
WORKERS_CONTAINER_CPUS = 1  # BLAS threads per container, the vCPU of a 1,769 MB function
SPEEDUP_TARGET = 1.7  # K = 2 over K = 1, time per epoch (at most 2 on 2 cores)
COSTS_TOLERANCE = 1e-10  # K = 2's costs against K = 1's, relative
PROJECTION_WORKERS = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class Job:
    """One benchmark job: its data (the .npz bytes LNN receives, and X, y as plain NumPy sees them), its training
    parameters (those of `train_reference` and of the run) and the epochs of each mode."""

    name: str
    title: str
    data: bytes
    X: np.ndarray
    y: np.ndarray
    parameters: dict
    epochs: dict[str, int] = field(default_factory=dict)  # mode ("numpy", "auto", "epoch", "layer") -> epochs
    repeats: int = 1  # runs of plain NumPy and of auto, alternating; the medians are reported

    def plain_numpy(self, blas_threads: int | None = None) -> tuple[float, list[float]]:
        """Seconds and costs of the plain NumPy loop over `epochs["numpy"]` epochs, each BLAS call on `blas_threads`
        threads (the containers' `--container-cpus`: another thread count sums in another order, and the costs
        would differ from the runs' in their last bits)."""
        with threadpool_limits(limits=blas_threads):
            started = time.perf_counter()
            _, costs = training.train_reference(self.X, self.y, **(self.parameters | {"epochs": self.epochs["numpy"]}))
            return time.perf_counter() - started, costs

    def run_parameters(self, granularity: str) -> dict:
        return self.parameters | {"epochs": self.epochs[granularity], "granularity": granularity}


def classic_job(examples: int, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """209 random 64x64x3 uint8 images (scaled by 1/255 on loading, as LNN did) with random 0/1 labels."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(examples, 64 * 64 * 3), dtype=np.uint8)
    y = rng.integers(0, 2, size=examples).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    return buffer.getvalue(), X.astype(np.float64) / 255.0, y.astype(np.float64)


def minibatch_data(examples: int = 4000, features: int = 100, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Seeded standard-normal features with learnable 0/1 labels: the sign of a random linear score plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((examples, features))
    w = rng.standard_normal(features)
    y = ((X @ w + 0.5 * rng.standard_normal(examples)) > 0).astype(np.float64)
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    return buffer.getvalue(), X, y


def make_jobs(args: argparse.Namespace) -> list[Job]:
    jobs = []
    if args.job in ("classic", "all"):
        data, X, y = classic_job(args.examples)
        jobs.append(Job("classic", f"classic LNN job: 12288-20-7-5-1 on {args.examples} examples, full batch, gd",
                        data, X, y,
                        {"neurons": NEURONS, "activations": ACTIVATIONS, "learning_rate": LEARNING_RATE, "seed": SEED},
                        {"numpy": args.epochs, "auto": args.epochs, "epoch": args.epochs, "layer": args.layer_epochs},
                        repeats=args.repeats))
    if args.job in ("minibatch", "all"):
        data, X, y = minibatch_data(args.minibatch_examples)
        batches = training.batch_count(len(y), MINIBATCH_OPTIONS["batch_size"])
        jobs.append(Job("minibatch", f"mini-batch job: 100-32-16-1 on {args.minibatch_examples} examples, "
                                     f"batch 64 ({batches} batches / epoch), adam",
                        data, X, y,
                        {"neurons": MINIBATCH_NEURONS, "activations": MINIBATCH_ACTIVATIONS, "seed": SEED} | MINIBATCH_OPTIONS,
                        {"numpy": args.minibatch_epochs, "auto": args.minibatch_epochs, "epoch": args.minibatch_epochs,
                         "layer": args.minibatch_layer_epochs},
                        repeats=args.minibatch_repeats))
    return jobs


def workers_data(examples: int = 60000, features: int = 784, classes: int = 10,
                 seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Seeded uint8 "pixels" (scaled by 1/255 on loading) with learnable class labels 0..classes-1: the argmax of a
    fixed random linear map of the centred inputs. Returns the .npz bytes and X, y as plain NumPy sees them."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(examples, features), dtype=np.uint8)
    W = rng.standard_normal((features, classes))
    X_scaled = X.astype(np.float64) / 255.0
    y = np.argmax((X_scaled - 0.5) @ W, axis=1).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    return buffer.getvalue(), X_scaled, y.astype(np.float64)


def parameter_bytes(layer_sizes: list[int]) -> int:
    """float64 bytes of a network's W and b (= those of its gradient sums): 875,088 for 784-128-64-10."""
    return 8 * sum(n * previous + n for previous, n in zip(layer_sizes, layer_sizes[1:]))


def relative_difference(costs: list[float], reference: list[float]) -> float:
    """The largest |a - b| / |b| over two equally long cost lists (inf when their lengths differ)."""
    if len(costs) != len(reference) or not costs:
        return float("inf")
    return max(abs(a - b) / abs(b) for a, b in zip(costs, reference))


def epoch_intervals(items: list[dict]) -> list[float]:
    """Seconds between consecutive epoch items' `finished_at`: one epoch each, at steady state (the first epoch,
    which loads the data, and the launch before it are not in any interval)."""
    stamps = [timestamp_seconds(item["finished_at"]) for item in items]
    return [later - earlier for earlier, later in zip(stamps, stamps[1:])]


def epoch_spans(items: list[dict]) -> list[float]:
    """Each epoch item's `started_at` to `finished_at`: at K = 1 and granularity epoch, the epoch's compute (its
    `train_epoch`, the finiteness check and the item); at K > 1 only the reduce's item."""
    return [timestamp_seconds(item["finished_at"]) - timestamp_seconds(item["started_at"]) for item in items]


@dataclass(frozen=True)
class AwsAssumptions:
    """Prices (us-east-1, arm64) and latencies of `aws_projection`. Prices: aws.amazon.com/lambda/pricing,
    /s3/pricing, /dynamodb/pricing/on-demand. Latencies and bandwidth are assumptions: no AWS page states them."""

    memory_mb: int = 1769  # one vCPU (docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html)
    gb_second: float = 0.0000133334  # $ per GB-second, arm64
    lambda_request: float = 0.20e-6  # $ per request
    s3_put: float = 0.005 / 1000  # $ per PUT (DELETEs are free)
    s3_get: float = 0.0004 / 1000  # $ per GET
    write_unit: float = 0.625e-6  # $ per DynamoDB write request unit (on demand)
    read_unit: float = 0.125e-6  # $ per DynamoDB read request unit
    s3_latency: float = 0.030  # s per S3 request of a small object: "tens of milliseconds" (assumed)
    bandwidth: float = 75e6  # bytes/s of one function's network (assumed)
    invoke_latency: float = 0.030  # s per asynchronous Invoke call (assumed)
    hop_latency: float = 0.050  # s from an accepted async invoke to the handler's start (assumed)
    dynamodb_latency: float = 0.010  # s per DynamoDB request (assumed: "single-digit milliseconds" plus the network)


def aws_round(compute_seconds: float, workers: int, gradient_bytes: int, assumptions: AwsAssumptions = AwsAssumptions(),
              state_bytes: int | None = None) -> dict:
    """One full-batch round (= one epoch) of K = `workers` on AWS, from K = 1's compute per epoch T1 =
    `compute_seconds`; G = `gradient_bytes`, S = `state_bytes` (gd: the parameters, as large as G).

    With L the S3 latency, B the bandwidth, d the DynamoDB latency, i an Invoke call and h the hop from an async
    invoke to the handler's start, the requests being those the runs make (`per_round`):
      K = 1, the chain: compute T1; PUT the state and delete the previous one; 5 DynamoDB requests (read the run,
        mark started, epoch item, commit, mark sent); 1 invoke:
            time(1) = T1 + (L + S/B) + L + 5 d + i + h
      K > 1, the critical path: a shard GETs the state, computes T1 / K, PUTs its sums, makes 4 DynamoDB requests
        (read, mark started, barrier, claim) and invokes the reduce; the reduce GETs the K sums one after another,
        PUTs the state, deletes the round's objects, makes 5 DynamoDB requests and sends the K shard events one
        after another:
            time(K) = T1/K + 2 (L + S/B) + (K + 1)(L + G/B) + L + 9 d + (K + 1) i + 2 h
    Cost: the billed durations (the chain's step; K shards and the reduce) at `memory_mb`, one request per
    invocation (1; K + 1), S3 PUTs (1; K + 1) and GETs (0; 2K), DynamoDB write units (7; 3K + 8: a run record of
    about 2 KB costs 2 per write, the barrier, the claim and the epoch item 1) and consistent reads (1; K + 1).
    """
    a, K = assumptions, workers
    S = gradient_bytes if state_bytes is None else state_bytes
    state, sums, d = a.s3_latency + S / a.bandwidth, a.s3_latency + gradient_bytes / a.bandwidth, a.dynamodb_latency
    if K == 1:
        compute = compute_seconds
        step = compute + state + a.s3_latency + 5 * d + a.invoke_latency
        communication = step - compute + a.hop_latency
        durations, requests, puts, gets, writes, reads = step, 1, 1, 0, 7, 1
    else:
        compute = compute_seconds / K
        shard = state + compute + sums + 4 * d + a.invoke_latency
        reduce = K * sums + state + a.s3_latency + 5 * d + K * a.invoke_latency
        communication = shard - compute + reduce + 2 * a.hop_latency
        durations, requests, puts, gets, writes, reads = K * shard + reduce, K + 1, K + 1, 2 * K, 3 * K + 8, K + 1
    cost = {"lambda": durations * a.memory_mb / 1024 * a.gb_second + requests * a.lambda_request,
            "s3": puts * a.s3_put + gets * a.s3_get, "dynamodb": writes * a.write_unit + reads * a.read_unit}
    return {"workers": K, "compute": compute, "communication": communication, "seconds": compute + communication,
            "cost": sum(cost.values()), "cost_by_service": cost}


def aws_projection(compute_seconds: float, gradient_bytes: int, workers: tuple[int, ...] = PROJECTION_WORKERS,
                   assumptions: AwsAssumptions = AwsAssumptions()) -> dict:
    """`aws_round` for each K, each with its speedup over K = 1, and the K of the least time per epoch."""
    rows = [aws_round(compute_seconds, K, gradient_bytes, assumptions) for K in workers]
    for row in rows:
        row["speedup"] = rows[0]["seconds"] / row["seconds"]
    return {"rows": rows, "best_workers": min(rows, key=lambda row: row["seconds"])["workers"]}


@contextmanager
def project_with_context(context: dict, project_dir: Path = PROJECT_DIR):
    """A directory to deploy the project's CDK app from with more context, as `cdk deploy -c key=value` would
    (`deploy_to_emulator` takes no -c): a cdk.json that runs the project's app with the project's context plus
    `context`, and the project's CDK CLI. Its own cdk.out (the NumPy layer is rebuilt there from pip's cache)."""
    settings = json.loads((project_dir / "cdk.json").read_text())
    with tempfile.TemporaryDirectory(prefix="lnn-bench-") as directory:
        shadow = Path(directory)
        settings["app"] = f"{project_dir / '.venv' / 'bin' / 'python'} {project_dir / 'app.py'}"
        settings["context"] = {**settings.get("context", {}), **context}
        (shadow / "cdk.json").write_text(json.dumps(settings, indent=2) + "\n")
        (shadow / "node_modules").symlink_to(project_dir / "node_modules")
        yield shadow


def cold_import_seconds() -> float:
    """A fresh interpreter's import of the handlers module, as a cold Lambda container does it."""
    code = "import time; t = time.perf_counter(); import lnn_core.handlers; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def layer_asset_megabytes(assembly: Path) -> float | None:
    """The unzipped size of the NumPy layer asset in the cloud assembly (the asset holding python/numpy)."""
    for asset in assembly.glob("asset.*"):
        if (asset / "python" / "numpy").is_dir():
            return sum(path.stat().st_size for path in asset.rglob("*") if path.is_file()) / 2**20
    return None


def median_run(runs: list[dict]) -> dict:
    """The run of median `seconds`, with every run's seconds and epochs' own seconds beside it."""
    chosen = dict(sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2])
    chosen["all_seconds"] = [run["seconds"] for run in runs]
    chosen["all_training_seconds"] = [run["training_seconds"] for run in runs]
    if all(run["training_seconds"] is not None for run in runs):
        chosen["training_seconds"] = median([run["training_seconds"] for run in runs])
    return chosen


def per_epoch_seconds(row: dict) -> float:
    """Launch to finish (or plain NumPy's loop) over the epochs."""
    return row["seconds"] / max(1, row["epochs"])


def timestamp_seconds(stamp: str) -> float:
    """An epoch item's ISO 8601 UTC time (millisecond resolution) in seconds since 1970."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def training_seconds(items: list[dict]) -> float | None:
    """The epochs' own time, from each epoch item's started_at to its finished_at (the epoch's mini-batches, its
    checks and its item): the run's time less the launch, the data loading, the commits, the invocations and the
    finish."""
    spans = [timestamp_seconds(item["finished_at"]) - timestamp_seconds(item["started_at"])
             for item in items if item.get("started_at") and item.get("finished_at")]
    # a stamp's milliseconds and its seconds are read apart (`ports.now`), so one can be a second off: no figure then
    return sum(spans) if spans and len(spans) == len(items) and min(spans) >= 0 else None


def delivery_summary(deliveries: list, data_bytes: int = 0) -> dict[str, dict]:
    """Per trainer state ("start", "shard", "reduce", "finish"...): deliveries, their mean seconds, and their
    requests by service and S3 bytes, summed, less the data loads: a delivery that read at least `data_bytes`
    (> 0) is its container's first, which GETs the run's .npz; those are counted apart (`data_loads`)."""
    summary: dict[str, dict] = {}
    for delivery in deliveries:
        if delivery.role != "trainer":
            continue
        state = (delivery.result or {}).get("state", "error" if delivery.error else "?")
        entry = summary.setdefault(state, {"deliveries": 0, "seconds": 0.0, "requests": defaultdict(int),
                                           "s3_bytes_in": 0, "s3_bytes_out": 0, "data_loads": 0})
        entry["deliveries"] += 1
        entry["seconds"] += delivery.seconds
        for service, count in delivery.io["requests"].items():
            entry["requests"][service] += count
        entry["s3_bytes_in"] += delivery.io["s3_bytes_in"]
        entry["s3_bytes_out"] += delivery.io["s3_bytes_out"]
        if data_bytes and delivery.io["s3_bytes_in"] >= data_bytes:
            entry["data_loads"] += 1
            entry["requests"]["s3"] -= 1
            entry["s3_bytes_in"] -= data_bytes
    for entry in summary.values():
        entry["mean_seconds"] = round(entry.pop("seconds") / entry["deliveries"], 4)
        entry["requests"] = dict(sorted(entry["requests"].items()))
    return summary


def per_round(summary: dict[str, dict], rounds: int, workers: int) -> dict:
    """Requests by service and S3 bytes per round of the training deliveries: at K = 1 the epoch steps (their
    state is "start"), at K > 1 the shards and the reduces (the launch, K > 1's start step and the finish are not
    rounds)."""
    states = ("start",) if workers == 1 else ("shard", "reduce")
    requests: dict[str, float] = defaultdict(float)
    moved = {"s3_bytes_in": 0, "s3_bytes_out": 0}
    loads = 0
    for state in states:
        entry = summary.get(state)
        if entry is None:
            continue
        for service, count in entry["requests"].items():
            requests[service] += count / rounds
        for key in moved:
            moved[key] += entry[key] / rounds
        loads += entry.get("data_loads", 0)
    return {"requests": {service: round(count, 3) for service, count in sorted(requests.items())},
            **{key: round(value) for key, value in moved.items()}, "data_loads": loads}


def run_workers_job(args: argparse.Namespace, out: Path, console: Console) -> tuple[dict, list[str]]:
    """The workers job at K = 1 and K = 2 on an emulator of its own (memory_size 1769), beside plain NumPy."""
    load_average = [round(load, 2) for load in os.getloadavg()]  # 1, 5, 15 minutes: is the machine quiet?
    data, X, y = workers_data(args.workers_examples)
    parameters = {"neurons": WORKERS_NEURONS, "activations": WORKERS_ACTIVATIONS, "seed": SEED,
                  "epochs": args.workers_epochs} | WORKERS_OPTIONS
    reference = {key: value for key, value in parameters.items() if key != "granularity"}
    failures, numpy_rows, runs = [], {}, {}
    for K in (1, 2):
        with threadpool_limits(limits=WORKERS_CONTAINER_CPUS):
            started = time.perf_counter()
            _, costs = training.train_reference(X, y, **reference, workers=K)
            numpy_rows[K] = {"seconds": time.perf_counter() - started, "costs": costs}
        console.print(f"workers, plain NumPy (workers={K}): {args.workers_epochs} epochs in {numpy_rows[K]['seconds']:.2f} s")
    with project_with_context({"memory_size": WORKERS_MEMORY_MB}) as project, \
            running_emulator(out / "workers-emulator.log") as emulator:
        started = time.monotonic()
        deployment = deploy_to_emulator(emulator, out / "workers-deploy.log", stack_name="LnnStack", project_dir=project)
        setup = {"emulator_start": emulator.started_seconds, "deploy": round(time.monotonic() - started, 2),
                 "memory_size": WORKERS_MEMORY_MB}
        console.print(f"workers job: emulator start {setup['emulator_start']:.1f} s, deploy with -c memory_size="
                      f"{WORKERS_MEMORY_MB} {setup['deploy']:.1f} s (not counted below)")
        session = emulator.session()
        with open(out / "workers-lambda.log", "w") as log:
            for K in (1, 2):
                deliveries: list = []
                with console.status(f"workers: lnn local, workers {K}, {args.workers_epochs} epochs..."):
                    result = run_local(session, deployment.outputs, parameters | {"workers": K}, data, log_stream=log,
                                       run_id=f"bench-workers-{K}", on_delivery=deliveries.append,
                                       concurrency=WORKERS_CONCURRENCY, container_cpus=WORKERS_CONTAINER_CPUS)
                results = result.results()
                intervals = epoch_intervals(result.epochs)
                # rounds 2..E: round 1 loads the data (47 MB) in each container, which no later round does
                summary = delivery_summary([delivery for delivery in deliveries
                                            if (delivery.result or {}).get("epoch", 0) >= 2], len(data))
                results |= {
                    "epoch_intervals": [round(seconds, 3) for seconds in intervals],
                    "seconds_per_epoch": median(intervals) if intervals else None,
                    "launch_to_first_epoch": round(timestamp_seconds(result.epochs[0]["finished_at"])
                                                   - float(result.run["created_epoch_seconds"]), 3) if result.epochs else None,
                    "training_seconds": training_seconds(result.epochs),
                    "epoch_spans": [round(seconds, 3) for seconds in epoch_spans(result.epochs)],
                    "deliveries_by_state": summary,
                    "per_round": per_round(summary, max(1, len(result.epochs) - 1), K),
                    "first_round": per_round(delivery_summary([delivery for delivery in deliveries
                                                               if (delivery.result or {}).get("epoch") == 1], len(data)), 1, K),
                    "costs_equal_plain_numpy": results["costs"] == numpy_rows[K]["costs"],
                }
                if results["status"] != "succeeded" or not results["costs_equal_plain_numpy"]:
                    failures.append(f"workers {K}")
                    console.print(f"[red]workers {K}: {results['status']} {results.get('reason', '')}; costs equal "
                                  f"to plain NumPy (workers={K}): {results['costs_equal_plain_numpy']}[/]")
                console.print(f"workers {K}: {results['epochs']} epochs in {results['seconds']:.2f} s launch to finish; "
                              f"epoch intervals {results['epoch_intervals']}")
                runs[K] = results
    one, two = runs[1], runs[2]
    speedup = (one["seconds_per_epoch"] / two["seconds_per_epoch"]
               if one["seconds_per_epoch"] and two["seconds_per_epoch"] else None)
    # T1, K = 1's compute per epoch: the median epoch span (epochs 1 and 2 run in fresh containers, one each)
    compute = median(one["epoch_spans"]) if one["epoch_spans"] and min(one["epoch_spans"]) >= 0 else None
    gradient_bytes = parameter_bytes([X.shape[1], *WORKERS_NEURONS])
    report = {
        "title": f"workers job: {X.shape[1]}-{'-'.join(map(str, WORKERS_NEURONS))} on {len(y):,} examples, full batch, "
                 f"gd, epoch granularity, concurrency {WORKERS_CONCURRENCY}, {WORKERS_CONTAINER_CPUS} BLAS thread per container",
        "parameters": parameters, "data_bytes": len(data), "setup": setup, "load_average": load_average,
        "plain_numpy": {K: {"seconds": row["seconds"], "seconds_per_epoch": row["seconds"] / args.workers_epochs}
                        for K, row in numpy_rows.items()},
        "runs": runs, "speedup": speedup, "speedup_target": SPEEDUP_TARGET,
        "compute_seconds": compute,
        "costs_relative_difference": relative_difference(two["costs"], one["costs"]),
        "gradient_bytes": gradient_bytes,
        "projection": aws_projection(compute, gradient_bytes) if compute else None,
    }
    if report["costs_relative_difference"] > COSTS_TOLERANCE:
        failures.append("workers: K = 2's costs differ from K = 1's")
    return report, failures


def workers_table(report: dict) -> Table:
    table = Table(title=f"LNN benchmark, {report['title']}", title_justify="left")
    for column in ("K", "epochs", "s / epoch (between epoch items)", "launch to epoch 1 s", "launch to finish s",
                   "plain NumPy s / epoch", "requests / round (rounds 2..E)", "S3 MB in / out per round", "busiest step",
                   "mean s per delivery (rounds 2..E)"):
        table.add_column(column, justify="left" if column.startswith(("requests", "busiest", "mean")) else "right")
    for K, results in report["runs"].items():
        rounds = results["per_round"]
        table.add_row(
            str(K), str(results["epochs"]), f"{results['seconds_per_epoch'] or float('nan'):.3f}",
            f"{results['launch_to_first_epoch'] or float('nan'):.2f}", f"{results['seconds']:.2f}",
            f"{report['plain_numpy'][K]['seconds_per_epoch']:.3f}",
            ", ".join(f"{service} {count:g}" for service, count in rounds["requests"].items()),
            f"{rounds['s3_bytes_in'] / 1e6:.2f} / {rounds['s3_bytes_out'] / 1e6:.2f} (+{rounds['data_loads']} data loads)",
            ", ".join(f"{service} {count}" for service, count in results["busiest_step"].items()),
            ", ".join(f"{state} {entry['mean_seconds']:.3f} (x{entry['deliveries']})"
                      for state, entry in results["deliveries_by_state"].items()),
        )
    return table


def projection_table(projection: dict) -> Table:
    table = Table(title="Projection on AWS, 1,769 MB arm64 functions, per epoch (one round)", title_justify="left")
    for column in ("K", "compute s", "communication s", "s / epoch", "speedup", "$ / epoch"):
        table.add_column(column, justify="right")
    for row in projection["rows"]:
        best = " (least)" if row["workers"] == projection["best_workers"] else ""
        table.add_row(f"{row['workers']}{best}", f"{row['compute']:.3f}", f"{row['communication']:.3f}",
                      f"{row['seconds']:.3f}", f"{row['speedup']:.2f}", f"{row['cost']:.7f}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnn_cli.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=("all", "classic", "minibatch", "workers"), default="all", help="the job(s) to run")
    parser.add_argument("--epochs", type=int, default=2500, help="classic job: epochs of plain NumPy, auto and epoch")
    parser.add_argument("--layer-epochs", type=int, default=10, help="classic job: epochs of the layer-granularity run")
    parser.add_argument("--examples", type=int, default=209, help="classic job: examples")
    parser.add_argument("--minibatch-epochs", type=int, default=100,
                        help="mini-batch job: epochs of plain NumPy, auto and epoch")
    parser.add_argument("--minibatch-layer-epochs", type=int, default=2,
                        help="mini-batch job: epochs of the layer-granularity run")
    parser.add_argument("--repeats", type=int, default=1, help="classic job: runs of plain NumPy and of auto (medians)")
    parser.add_argument("--minibatch-repeats", type=int, default=3,
                        help="mini-batch job: runs of plain NumPy and of auto, alternating (medians)")
    parser.add_argument("--minibatch-examples", type=int, default=4000, help="mini-batch job: examples")
    parser.add_argument("--workers-examples", type=int, default=60000, help="workers job: examples")
    parser.add_argument("--workers-epochs", type=int, default=9, help="workers job: epochs of each run (the time per epoch is the median interval between epoch items)")
    parser.add_argument("--out", default="out/bench", help="where bench.json and the logs go")
    add_runtime_options(parser)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for the table rather than rich's 80 columns
        console = Console(width=200)
    jobs = make_jobs(args)
    rows: dict[str, dict] = {job.name: {} for job in jobs}
    failures = []
    setup = None
    if jobs:
        with running_emulator(out / "emulator.log") as emulator:
            started = time.monotonic()
            deployment = deploy_to_emulator(emulator, out / "deploy.log", stack_name="LnnStack")
            setup = {"emulator_start": emulator.started_seconds, "deploy": round(time.monotonic() - started, 2)}
            console.print(f"emulator start {setup['emulator_start']:.1f} s, deploy {setup['deploy']:.1f} s (not counted below)")
            session = emulator.session()

            def lnn_run(job: Job, granularity: str, costs: list[float], attempt: int) -> dict:
                epochs = job.epochs[granularity]
                with console.status(f"{job.name}: lnn local --granularity {granularity}, {epochs} epochs..."):
                    result = run_local(session, deployment.outputs, job.run_parameters(granularity), job.data,
                                       log_stream=log, run_id=f"bench-{job.name}-{granularity}-{attempt}",
                                       concurrency=args.concurrency, container_cpus=args.container_cpus)
                results = result.results()
                same = results["costs"] == costs[:epochs]
                if results["status"] != "succeeded" or not same:
                    failures.append(f"{job.name} {granularity}")
                    console.print(f"[red]{job.name} {granularity}: {results['status']} {results.get('reason', '')}; "
                                  f"costs equal to plain NumPy: {same}[/]")
                results["training_seconds"] = training_seconds(result.epochs)
                console.print(f"{job.name}, {granularity}: {epochs} epochs in {results['seconds']:.2f} s")
                return results

            with open(out / "lambda.log", "w") as log:
                for job in jobs:
                    # plain NumPy and auto alternate, `repeats` times each, so that both see the same load; medians count
                    numpy_runs, auto_runs = [], []
                    for attempt in range(1, job.repeats + 1):
                        seconds, costs = job.plain_numpy(args.container_cpus)
                        numpy_runs.append(seconds)
                        console.print(f"{job.name}, plain NumPy: {job.epochs['numpy']} epochs in {seconds:.2f} s")
                        auto_runs.append(lnn_run(job, "auto", costs, attempt))
                    rows[job.name]["numpy"] = {"epochs": job.epochs["numpy"], "seconds": median(numpy_runs), "all_seconds": numpy_runs}
                    rows[job.name]["auto"] = median_run(auto_runs)
                    for granularity in ("epoch", "layer"):
                        rows[job.name][granularity] = lnn_run(job, granularity, costs, 1)
    report = {"setup": setup, "cold_import_seconds": cold_import_seconds(),
              "layer_megabytes": layer_asset_megabytes(PROJECT_DIR / "cdk.out"),
              "jobs": {job.name: {"title": job.title, "parameters": job.parameters, "runs": rows[job.name],
                                  "auto_ratio": auto_ratio(rows[job.name]),
                                  "auto_training_ratio": auto_training_ratio(rows[job.name])} for job in jobs}}
    workers = None
    if args.job in ("workers", "all"):
        workers, failed = run_workers_job(args, out, console)
        failures += failed
        report["jobs"]["workers"] = workers
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    for job in jobs:
        console.print(bench_table(job.title, rows[job.name]))
    if workers is not None:
        console.print(workers_table(workers))
        if workers["projection"]:
            console.print(projection_table(workers["projection"]))
        console.print(f"workers: K = 2 over K = 1, time per epoch between epoch items: {workers['speedup'] or float('nan'):.2f} x "
                      f"(target {SPEEDUP_TARGET}, at most 2 on 2 cores); projection from T1 = "
                      f"{workers['compute_seconds'] or float('nan'):.3f} s; costs within a relative "
                      f"{workers['costs_relative_difference']:.1e} of K = 1's (limit {COSTS_TOLERANCE:g}); "
                      f"machine load before the runs {workers['load_average']}")
    console.print(f"handler cold import {report['cold_import_seconds']:.2f} s (target 0.5 s); NumPy layer "
                  f"{report['layer_megabytes'] or float('nan'):.1f} MB unzipped (target 60 MB); details in {out / 'bench.json'}")
    for job in jobs:
        own = auto_training_ratio(rows[job.name])
        fixed = rows[job.name]["auto"]["seconds"] - (rows[job.name]["auto"].get("training_seconds") or 0)
        console.print(f"{job.name}: auto / plain NumPy per epoch = {auto_ratio(rows[job.name]):.2f} launch to finish, "
                      f"{own or float('nan'):.2f} in the epochs' own time (target {AUTO_TARGET}); auto's time outside "
                      f"its epochs (launch, data, commits, finish) {fixed:.2f} s")
    return 1 if failures else 0


def auto_ratio(rows: dict) -> float:
    """auto's time per epoch, launch to finish, over plain NumPy's."""
    return per_epoch_seconds(rows["auto"]) / per_epoch_seconds(rows["numpy"])


def auto_training_ratio(rows: dict) -> float | None:
    """auto's epochs' own time (`training_seconds`) per epoch over plain NumPy's."""
    own = rows["auto"].get("training_seconds")
    return None if own is None else own / max(1, rows["auto"]["epochs"]) / per_epoch_seconds(rows["numpy"])


def bench_table(title: str, rows: dict) -> Table:
    numpy_per_epoch = per_epoch_seconds(rows["numpy"])
    table = Table(title=f"LNN benchmark, {title}; per epoch", title_justify="left")
    for column in ("mode", "epochs", "s / epoch", "x NumPy", "epoch's own s", "x NumPy (own)", "invocations / epoch",
                   "AWS requests / epoch", "busiest step", "S3 MB in / out per epoch"):
        table.add_column(column, justify="left" if column in ("mode", "AWS requests / epoch", "busiest step") else "right")
    table.add_row("plain NumPy", str(rows["numpy"]["epochs"]), f"{numpy_per_epoch:.4f}", "1.00", f"{numpy_per_epoch:.4f}",
                  "1.00", "-", "-", "-", "-")
    for mode in GRANULARITIES:
        results = rows[mode]
        per_epoch = results["per_epoch"]
        seconds = per_epoch_seconds(results)
        own = results.get("training_seconds") if mode == "auto" else None  # epoch, layer: their span holds steps
        own = None if own is None else own / max(1, results["epochs"])
        table.add_row(
            mode, str(results["epochs"]), f"{seconds:.4f}", f"{seconds / numpy_per_epoch:.2f}",
            "-" if own is None else f"{own:.4f}", "-" if own is None else f"{own / numpy_per_epoch:.2f}",
            f"{per_epoch['invocations']:.3f}",
            ", ".join(f"{service} {count:g}" for service, count in per_epoch["aws_requests"].items()),
            ", ".join(f"{service} {count}" for service, count in results["busiest_step"].items()),
            f"{per_epoch['s3_bytes_in'] / 2**20:.2f} / {per_epoch['s3_bytes_out'] / 2**20:.2f}",
        )
    return table


if __name__ == "__main__":
    sys.exit(main())
