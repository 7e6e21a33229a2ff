"""`make bench`'s workers job (issue 12): 60,000 seeded synthetic 784-feature uint8 examples (like MNIST's pixels) in
10 classes, 784-128-64-10 (relu, relu, softmax), full-batch gd at granularity epoch, run with `workers` K = 1, 2, 4
and 8 (`WORKERS_K`) at concurrency 2 and 1 BLAS thread per container, on an emulator of its own whose stack is
deployed with context memory_size=1769 (the launcher's memory check refuses this job at the default 1024 MB). Its
time per epoch is the median interval between consecutive epoch items' `finished_at` (launch, epoch 1's data loading
and finish excluded); it reports the speedup of K = 2 over K = 1, requests and S3 bytes per round, bytes per
function, sequential round trips per round from the deliveries' traces, the busiest step, the costs' agreement, and
a projection of time and cost per epoch on AWS for K = 1 .. 64 (`bench_projection`)."""

import argparse
import io
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from statistics import median

import numpy as np
from rich.console import Console
from threadpoolctl import threadpool_limits

from lnn_cli.bench.figures import (
    delivery_summary,
    epoch_intervals,
    epoch_spans,
    per_round,
    relative_difference,
    round_trips_per_round,
    timestamp_seconds,
    training_seconds,
)
from lnn_cli.bench.jobs import SEED
from lnn_cli.bench.projection import aws_projection
from lnn_cli.cloud.deploy import PROJECT_DIR, deploy_to_emulator
from lnn_cli.cloud.emulator import running_emulator
from lnn_cli.cloud.local import run_local
from lnn_core.ml import training

WORKERS_NEURONS = [128, 64, 10]
WORKERS_ACTIVATIONS = ["relu", "relu", "softmax"]
WORKERS_OPTIONS = {"learning_rate": 0.5, "optimizer": "gd", "granularity": "epoch"}
WORKERS_MEMORY_MB = 1769  # one vCPU; the job's step needs about 1,540 MB (lnn_core.launch.budget), refused at 1024
WORKERS_CONCURRENCY = 2  # containers per function: the shards of K = 2 run side by side on the 2 cores
WORKERS_CONTAINER_CPUS = 1  # BLAS threads per container, the vCPU of a 1,769 MB function
WORKERS_K = (1, 2, 4, 8)
SPEEDUP_TARGET = 1.7  # K = 2 over K = 1, time per epoch (at most 2 on 2 cores)
COSTS_TOLERANCE = 1e-10  # K = 2's costs against K = 1's, relative


def workers_data(
    examples: int = 60000, features: int = 784, classes: int = 10, seed: int = 0
) -> tuple[bytes, np.ndarray, np.ndarray]:
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


def run_workers_job(args: argparse.Namespace, out: Path, console: Console) -> tuple[dict, list[str]]:
    """The workers job at K = 1 and K = 2 on an emulator of its own (memory_size 1769), beside plain NumPy."""
    load_average = [round(load, 2) for load in os.getloadavg()]  # 1, 5, 15 minutes: is the machine quiet?
    data, X, y = workers_data(args.workers_examples)
    parameters = {
        "neurons": WORKERS_NEURONS,
        "activations": WORKERS_ACTIVATIONS,
        "seed": SEED,
        "epochs": args.workers_epochs,
    } | WORKERS_OPTIONS
    reference = {key: value for key, value in parameters.items() if key != "granularity"}
    failures, numpy_rows, runs = [], {}, {}
    for K in WORKERS_K:
        with threadpool_limits(limits=WORKERS_CONTAINER_CPUS):
            started = time.perf_counter()
            _, costs = training.train_reference(X, y, **reference, workers=K)
            numpy_rows[K] = {"seconds": time.perf_counter() - started, "costs": costs}
        console.print(
            f"workers, plain NumPy (workers={K}): {args.workers_epochs} epochs in {numpy_rows[K]['seconds']:.2f} s"
        )
    with (
        project_with_context({"memory_size": WORKERS_MEMORY_MB}) as project,
        running_emulator(out / "workers-emulator.log") as emulator,
    ):
        started = time.monotonic()
        deployment = deploy_to_emulator(
            emulator, out / "workers-deploy.log", stack_name="LnnStack", project_dir=project
        )
        setup = {
            "emulator_start": emulator.started_seconds,
            "deploy": round(time.monotonic() - started, 2),
            "memory_size": WORKERS_MEMORY_MB,
        }
        console.print(
            f"workers job: emulator start {setup['emulator_start']:.1f} s, deploy with -c memory_size="
            f"{WORKERS_MEMORY_MB} {setup['deploy']:.1f} s (not counted below)"
        )
        session = emulator.session()
        with open(out / "workers-lambda.log", "w") as log:
            for K in WORKERS_K:
                deliveries: list = []
                with console.status(f"workers: lnn local, workers {K}, {args.workers_epochs} epochs..."):
                    result = run_local(
                        session,
                        deployment.outputs,
                        parameters | {"workers": K},
                        data,
                        log_stream=log,
                        run_id=f"bench-workers-{K}",
                        on_delivery=deliveries.append,
                        concurrency=WORKERS_CONCURRENCY,
                        container_cpus=WORKERS_CONTAINER_CPUS,
                    )
                results = result.results()
                intervals = epoch_intervals(result.epochs)
                # rounds 2..E: round 1 loads the data (47 MB) in each container, which no later round does
                steady = [delivery for delivery in deliveries if (delivery.result or {}).get("epoch", 0) >= 2]
                summary = delivery_summary(steady, len(data))
                results |= {
                    "epoch_intervals": [round(seconds, 3) for seconds in intervals],
                    "seconds_per_epoch": median(intervals) if intervals else None,
                    "launch_to_first_epoch": round(
                        timestamp_seconds(result.epochs[0]["finished_at"]) - float(result.run["created_epoch_seconds"]),
                        3,
                    )
                    if result.epochs
                    else None,
                    "training_seconds": training_seconds(result.epochs),
                    "epoch_spans": [round(seconds, 3) for seconds in epoch_spans(result.epochs)],
                    "deliveries_by_state": summary,
                    "per_round": per_round(summary, max(1, len(result.epochs) - 1), K),
                    "round_trips": round_trips_per_round(steady, K),
                    "first_round": per_round(
                        delivery_summary(
                            [delivery for delivery in deliveries if (delivery.result or {}).get("epoch") == 1],
                            len(data),
                        ),
                        1,
                        K,
                    ),
                    "costs_equal_plain_numpy": results["costs"] == numpy_rows[K]["costs"],
                }
                if results["status"] != "succeeded" or not results["costs_equal_plain_numpy"]:
                    failures.append(f"workers {K}")
                    console.print(
                        f"[red]workers {K}: {results['status']} {results.get('reason', '')}; costs equal "
                        f"to plain NumPy (workers={K}): {results['costs_equal_plain_numpy']}[/]"
                    )
                console.print(
                    f"workers {K}: {results['epochs']} epochs in {results['seconds']:.2f} s launch to finish; "
                    f"epoch intervals {results['epoch_intervals']}"
                )
                runs[K] = results
    one, two = runs[1], runs[2]
    speedup = (
        one["seconds_per_epoch"] / two["seconds_per_epoch"]
        if one["seconds_per_epoch"] and two["seconds_per_epoch"]
        else None
    )
    # T1, K = 1's compute per epoch: the median epoch span (epochs 1 and 2 run in fresh containers, one each)
    compute = median(one["epoch_spans"]) if one["epoch_spans"] and min(one["epoch_spans"]) >= 0 else None
    gradient_bytes = parameter_bytes([X.shape[1], *WORKERS_NEURONS])
    report = {
        "title": f"workers job: {X.shape[1]}-{'-'.join(map(str, WORKERS_NEURONS))} on {len(y):,} examples, full batch, "
        f"gd, epoch granularity, concurrency {WORKERS_CONCURRENCY}, {WORKERS_CONTAINER_CPUS} BLAS thread per container",
        "parameters": parameters,
        "data_bytes": len(data),
        "setup": setup,
        "load_average": load_average,
        "plain_numpy": {
            K: {"seconds": row["seconds"], "seconds_per_epoch": row["seconds"] / args.workers_epochs}
            for K, row in numpy_rows.items()
        },
        "runs": runs,
        "speedup": speedup,
        "speedup_target": SPEEDUP_TARGET,
        "compute_seconds": compute,
        "costs_relative_difference": relative_difference(two["costs"], one["costs"]),
        "gradient_bytes": gradient_bytes,
        "projection": aws_projection(compute, gradient_bytes) if compute else None,
    }
    if report["costs_relative_difference"] > COSTS_TOLERANCE:
        failures.append("workers: K = 2's costs differ from K = 1's")
    return report, failures
