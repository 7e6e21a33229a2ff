"""`make bench`'s workers job (issue 12): 60,000 seeded synthetic 784-feature uint8 examples (like MNIST's pixels) in
10 classes, 784-128-64-10 (relu, relu, softmax), full-batch gd at granularity epoch, run with `workers` K = 1, 2, 4
and 8 (`WORKERS_K`) at concurrency 2 and 1 BLAS thread per container, on an emulator of its own whose stack is
deployed with context memory_size=1769 (the launcher's memory check refuses this job at the default 1024 MB). Its
time per epoch is the median interval between consecutive epoch items' `finished_at` (launch, epoch 1's data loading
and finish excluded); it reports the speedup of K = 2 over K = 1, requests and S3 bytes per round, bytes per
function, sequential round trips per round from the deliveries' traces, the busiest step, the costs' agreement, and
a projection of time and cost per epoch on AWS for K = 1 .. 64 (`bench_projection`), for LNN's round in slices
(ScatterReduce through S3 by invoked workers) and for workers alive across rounds (not built), each K priced at
the memory it needs,
with the model checked against this machine (`latency`).
`--workers-neurons`, `--workers-dtype`, `--workers-memory` and `--workers-k` run another network, dtype, memory size
or set of K: issue 19's larger job is `--workers-neurons 1024,512,10 --workers-memory 3584`."""

import argparse
import dataclasses
import io
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import numpy as np
from rich.console import Console
from threadpoolctl import threadpool_limits

from lnn_cli.bench.figures import (
    committing_path,
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
from lnn_cli.bench.latency import emulator_assumptions
from lnn_cli.bench.projection import (
    PROJECTION_WORKERS,
    AwsAssumptions,
    aws_projection,
    aws_round,
    staying_round,
    tail_speedups,
)
from lnn_cli.cloud.deploy import PROJECT_DIR, deploy_to_emulator
from lnn_cli.cloud.emulator import running_emulator
from lnn_cli.cloud.local import new_run_id, run_local
from lnn_cli.cloud.runtime.core import LOCAL_POLL_SECONDS
from lnn_cli.datafiles import data_in_parts
from lnn_core.launch import budget
from lnn_core.ml import training
from lnn_core.ml.parameters import PARAMETERS, STAYING_WORKERS
from lnn_core.ml.shards import shard_slices
from lnn_core.protocol.layout import part_key
from lnn_core.protocol.round_steps import shard_reduces

WORKERS_NEURONS = [128, 64, 10]


def hidden_relu_softmax(neurons) -> list[str]:
    """relu for every hidden layer, softmax for the 10 classes."""
    return ["relu"] * (len(neurons) - 1) + ["softmax"]


WORKERS_ACTIVATIONS = hidden_relu_softmax(WORKERS_NEURONS)
WORKERS_OPTIONS = {"learning_rate": 0.5, "optimizer": "gd", "granularity": "epoch"}
WORKERS_MEMORY_MB = 1769  # one vCPU; the job's step needs about 1,540 MB (lnn_core.launch.budget), refused at 1024
WORKERS_CONCURRENCY = 2  # containers per function: the shards of K = 2 run side by side on the 2 cores
WORKERS_CONTAINER_CPUS = 1  # BLAS threads per container, the vCPU of a 1,769 MB function
WORKERS_K = (1, 2, 4, 8)
WORKERS_REPEATS = 3  # runs of each K, alternating; the median counts (one run's ratio moved by about 0.2)
MIN_WORKERS_EPOCHS = 4  # 3 intervals: their median leaves out the one that holds a second container's data load
SPEEDUP_TARGET = 1.7  # K = 2 over K = 1, time per epoch (at most 2 on 2 cores)
COSTS_TOLERANCE = 1e-10  # K = 2's costs against K = 1's, relative
MODEL_TOLERANCE = 0.25  # the projection, fed this machine's latencies, predicts the local K = 1 and 2 this closely
# The larger job of issue 19 (`--workers-neurons 1024,512,10`, about 1.3 M parameters): its projection's targets
LARGE_TARGETS = {8: 5.0, 16: 8.0}  # K -> speedup per epoch over K = 1
LARGE_COST_LIMIT = 2.0  # K = 16's cost per epoch over K = 1's
OVERHEAD_PROBE_EXAMPLES = 1000  # the run that measures a delivery's own work (`handler_overhead`)
OVERHEAD_PROBE_EPOCHS = 7


@dataclass(frozen=True)
class WorkersJob:
    """What a run of the workers job varies: the network's hidden and output layers, the dtype, the functions'
    memory (context memory_size), the K to run and the epochs."""

    examples: int = 60000
    neurons: tuple[int, ...] = tuple(WORKERS_NEURONS)
    dtype: str = "float64"
    memory_mb: int = WORKERS_MEMORY_MB
    workers: tuple[int, ...] = WORKERS_K
    epochs: int = 10  # issue 19 measures K = 2 over K = 1 end to end over 10 epochs
    repeats: int = WORKERS_REPEATS
    reduce: str = PARAMETERS["reduce"].default  # where the rounds are reduced (parameter `reduce`)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "WorkersJob":
        return cls(
            examples=args.workers_examples,
            neurons=tuple(args.workers_neurons),
            dtype=args.workers_dtype,
            memory_mb=args.workers_memory,
            workers=tuple(args.workers_k),
            epochs=args.workers_epochs,
            repeats=args.workers_repeats,
            reduce=args.workers_reduce,
        )


def memory_by_workers(job: WorkersJob, features: int, workers: tuple[int, ...]) -> dict[int, int]:
    """The memory (MB) each K's functions need on AWS for this job: the launcher's estimate of one step over a
    shard's examples (`budget.estimate_step_memory`), rounded up as it suggests, and at least one vCPU's 1,769 MB."""
    itemsize = np.dtype(job.dtype).itemsize
    return {
        K: max(
            WORKERS_MEMORY_MB,
            budget.suggest_memory_size(
                budget.estimate_step_memory(-(-job.examples // K), features, job.neurons, itemsize=itemsize).total
            ),
        )
        for K in workers
    }


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


def parameter_bytes(layer_sizes: list[int], itemsize: int = 8) -> int:
    """Bytes of a network's W and b (= those of its gradient sums) in a dtype of `itemsize` bytes: 875,088 for
    784-128-64-10 in float64."""
    return itemsize * sum(n * previous + n for previous, n in zip(layer_sizes, layer_sizes[1:]))


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
    """The workers job at each K on an emulator of its own (context memory_size `--workers-memory`), beside plain
    NumPy."""
    job = WorkersJob.from_args(args)
    load_average = [round(load, 2) for load in os.getloadavg()]  # 1, 5, 15 minutes: is the machine quiet?
    data, X, y = workers_data(job.examples)
    parameters = {
        "neurons": list(job.neurons),
        "activations": hidden_relu_softmax(job.neurons),
        "seed": SEED,
        "epochs": job.epochs,
        "dtype": job.dtype,
        "reduce": job.reduce,
    } | WORKERS_OPTIONS
    reference = {key: value for key, value in parameters.items() if key not in ("granularity", "reduce")}
    failures, numpy_rows, runs = [], {}, {}
    for K in job.workers:
        with threadpool_limits(limits=WORKERS_CONTAINER_CPUS):
            started = time.perf_counter()
            parts = [rows.stop - rows.start for rows in shard_slices(len(y), K)] if K > 1 else None  # as `lnn local`
            _, costs = training.train_reference(X, y, **reference, workers=K, parts=parts)
            numpy_rows[K] = {"seconds": time.perf_counter() - started, "costs": costs}
        console.print(f"workers, plain NumPy (workers={K}): {job.epochs} epochs in {numpy_rows[K]['seconds']:.2f} s")
    with (
        project_with_context({"memory_size": job.memory_mb}) as project,
        running_emulator(out / "workers-emulator.log") as emulator,
    ):
        started = time.monotonic()
        deployment = deploy_to_emulator(
            emulator, out / "workers-deploy.log", stack_name="LnnStack", project_dir=project
        )
        setup = {
            "emulator_start": emulator.started_seconds,
            "deploy": round(time.monotonic() - started, 2),
            "memory_size": job.memory_mb,
        }
        console.print(
            f"workers job: emulator start {setup['emulator_start']:.1f} s, deploy with -c memory_size="
            f"{job.memory_mb} {setup['deploy']:.1f} s (not counted below)"
        )
        session = emulator.session()
        state_bytes = parameter_bytes([X.shape[1], *job.neurons], np.dtype(job.dtype).itemsize)
        local = emulator_assumptions(session, deployment.outputs.bucket, deployment.outputs.table, state_bytes)
        with open(out / "workers-lambda.log", "w") as log:
            local = dataclasses.replace(
                local,
                handler_overhead=handler_overhead(session, deployment.outputs, parameters, local, log, state_bytes),
            )
            console.print(
                f"workers: this machine's emulator: S3 GET {local.s3_latency * 1000:.1f} ms, "
                f"{local.bandwidth / 1e6:.0f} MB/s, PUT {local.s3_put_latency * 1000:.1f} ms + "
                f"{local.s3_put_seconds_per_mib * 1000:.1f} ms per MiB, "
                f"DynamoDB {local.dynamodb_latency * 1000:.1f} ms; a delivery's "
                f"own work {local.handler_overhead * 1000:.0f} ms (a {OVERHEAD_PROBE_EXAMPLES:,}-example run)"
            )
            repeated: dict[int, list[dict]] = {K: [] for K in job.workers}
            parts = {K: data_in_parts(data, K) if K > 1 else None for K in job.workers}  # as `lnn local` splits
            for repeat in range(job.repeats):  # K ascending, then descending (ABBA): a drift of the machine's load
                for K in job.workers if repeat % 2 == 0 else job.workers[::-1]:  # weighs on every K alike
                    results = measured_run(
                        session, deployment.outputs, parameters, data, parts[K], K, log, console, job.epochs
                    )
                    results["costs_equal_plain_numpy"] = results["costs"] == numpy_rows[K]["costs"]
                    if results["status"] != "succeeded" or not results["costs_equal_plain_numpy"]:
                        failures.append(f"workers {K}")
                        console.print(
                            f"[red]workers {K}: {results['status']} {results.get('reason', '')}; costs equal "
                            f"to plain NumPy (workers={K}): {results['costs_equal_plain_numpy']}[/]"
                        )
                    repeated[K].append(results)
            runs = {K: median_run(repeated[K]) for K in job.workers}
    one, two = runs[1], runs[2]
    speedup = (
        one["seconds_per_epoch"] / two["seconds_per_epoch"]
        if one["seconds_per_epoch"] and two["seconds_per_epoch"]
        else None
    )
    # T1, K = 1's compute per epoch: the median epoch span (epochs 1 and 2 run in fresh containers, one each)
    compute = median(one["epoch_spans"]) if one["epoch_spans"] and min(one["epoch_spans"]) >= 0 else None
    gradient_bytes = state_bytes
    memory = memory_by_workers(job, X.shape[1], PROJECTION_WORKERS)
    on_aws = AwsAssumptions(handler_overhead=local.handler_overhead)  # CPU work: as on this machine's core
    report = {
        "title": f"workers job: {X.shape[1]}-{'-'.join(map(str, job.neurons))} on {len(y):,} examples, {job.dtype}, "
        f"full batch, gd, epoch granularity, concurrency {WORKERS_CONCURRENCY}, {WORKERS_CONTAINER_CPUS} BLAS thread "
        "per container",
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
        "end_to_end_speedup": one["seconds"] / two["seconds"],
        "projection": aws_projection(compute, gradient_bytes, assumptions=on_aws, memory_mb=memory)
        if compute
        else None,
        "staying_projection": aws_projection(
            compute, gradient_bytes, assumptions=on_aws, memory_mb=memory, design="staying"
        )
        if compute
        else None,
        "persistent_projection": aws_projection(
            compute, gradient_bytes, assumptions=on_aws, memory_mb=memory, design="persistent"
        )
        if compute
        else None,
        "persistent_tails": tail_speedups(compute, gradient_bytes, on_aws, tuple(LARGE_TARGETS)) if compute else None,
        "model_check": model_check(compute, gradient_bytes, local, runs, job.reduce) if compute else None,
    }
    if report["costs_relative_difference"] > COSTS_TOLERANCE:
        failures.append("workers: K = 2's costs differ from K = 1's")
    return report, failures


def measured_run(
    session, outputs, parameters: dict, data: bytes, parts: dict | None, K: int, log, console, epochs: int
) -> dict:
    """One run of the job at K workers through `lnn local`'s path (K > 1: `data` in the K `parts`), with its
    figures: epoch intervals, launch to finish, the requests and bytes of rounds 2..E and of round 1, round trips."""
    deliveries: list = []
    loaded_bytes = min(len(parts[part_key("", k, K)]) for k in range(K)) if parts else len(data)
    with console.status(f"workers: lnn local, workers {K}, {epochs} epochs..."):
        result = run_local(
            session,
            outputs,
            with_workers(parameters, K),
            data,
            log_stream=log,
            run_id=new_run_id(f"bench-workers-{K}"),
            on_delivery=deliveries.append,
            concurrency=WORKERS_CONCURRENCY,
            container_cpus=WORKERS_CONTAINER_CPUS,
            parts=parts,
        )
    results = result.results()
    intervals = epoch_intervals(result.epochs)
    # rounds 2..E: round 1 loads the data (47 MB, or a part) in each container, which no later round does
    steady = [delivery for delivery in deliveries if (delivery.result or {}).get("epoch", 0) >= 2]
    summary = delivery_summary(steady, loaded_bytes)
    first_round = [delivery for delivery in deliveries if (delivery.result or {}).get("epoch") == 1]
    results |= {
        "epoch_intervals": [round(seconds, 3) for seconds in intervals],
        "seconds_per_epoch": median(intervals) if intervals else None,
        "launch_to_first_epoch": round(
            timestamp_seconds(result.epochs[0]["finished_at"]) - float(result.run["created_epoch_seconds"]), 3
        )
        if result.epochs
        else None,
        "training_seconds": training_seconds(result.epochs),
        "epoch_spans": [round(seconds, 3) for seconds in epoch_spans(result.epochs)],
        "deliveries_by_state": summary,
        "per_round": per_round(summary, max(1, len(result.epochs) - 1), K),
        "round_trips": round_trips_per_round(steady, K),
        "committing_path": committing_path(steady, K),
        "first_round": per_round(delivery_summary(first_round, loaded_bytes), 1, K),
    }
    console.print(
        f"workers {K}: {results['epochs']} epochs in {results['seconds']:.2f} s launch to finish; "
        f"epoch intervals {results['epoch_intervals']}"
    )
    path = results["committing_path"]
    if path["deliveries"]:
        trips = ", ".join(f"{service} {count:g}" for service, count in path["after_round_trips"].items())
        console.print(
            f"workers {K}: the delivery that commits a round, medians of {path['deliveries']} (each figure apart): "
            f"{path['seconds']:.3f} s; before its compute {path['before']:.3f} s, compute {path['compute']:.3f} s, "
            f"after it {path['after']:.3f} s ({trips} sequential requests, {path['after_requests']:.3f} s of them "
            "in flight)"
        )
    return results


def median_run(runs: list[dict]) -> dict:
    """The run of median launch-to-finish time among repeats of one K (the lower middle of an even count), with
    every repeat's launch to finish and median epoch interval beside it."""
    ranked = sorted(runs, key=lambda run: run["seconds"])
    return ranked[(len(ranked) - 1) // 2] | {
        "repeats_seconds": [round(run["seconds"], 3) for run in runs],
        "repeats_seconds_per_epoch": [run["seconds_per_epoch"] for run in runs],
    }


def with_workers(parameters: dict, workers: int) -> dict:
    """The job's parameters at K = `workers`: a run of one worker has no rounds to reduce (no `reduce`)."""
    if workers == 1:
        return {name: value for name, value in parameters.items() if name != "reduce"} | {"workers": 1}
    return parameters | {"workers": workers}


def handler_overhead(session, outputs, parameters: dict, local: AwsAssumptions, log, state_bytes: int) -> float:
    """A delivery's own work besides its compute and its requests, in seconds: a K = 1 run of the job's network on
    `OVERHEAD_PROBE_EXAMPLES` examples, whose median epoch interval less its median epoch span (the compute) less
    the K = 1 requests' time on this machine (`aws_round` with no compute) is that work. Measured on another run
    than the ones the model then predicts."""
    data, _, _ = workers_data(OVERHEAD_PROBE_EXAMPLES, seed=1)
    probe = with_workers(parameters, 1) | {"epochs": OVERHEAD_PROBE_EPOCHS}
    result = run_local(
        session,
        outputs,
        probe,
        data,
        log_stream=log,
        run_id="bench-overhead-probe",
        concurrency=WORKERS_CONCURRENCY,
        container_cpus=WORKERS_CONTAINER_CPUS,
    )
    requests = aws_round(0.0, 1, state_bytes, local)["seconds"]
    return max(0.0, median(epoch_intervals(result.epochs)) - median(epoch_spans(result.epochs)) - requests)


def model_check(compute: float, gradient_bytes: int, local, runs: dict, reduce: str) -> dict:
    """The projection's model fed this machine's measured latencies (`local`, `latency.emulator_assumptions`) and
    T1, against the measured median epoch interval at K = 1 and K = 2: predicted, measured, and their ratio, which
    must lie within `MODEL_TOLERANCE` of 1. The runs' K = 2 rounds as their parameter `reduce` takes them; staying
    workers' with the local runtime's polls (`LOCAL_POLL_SECONDS` apart) and no hand-over (one life a run)."""
    rows = {}
    for K in (1, 2):
        if K > 1 and reduce == STAYING_WORKERS:
            poll = local.dynamodb_latency + LOCAL_POLL_SECONDS
            predicted = staying_round(compute, K, gradient_bytes, local, poll_interval=poll, cold_start=0.0)["seconds"]
        else:
            in_shard = K > 1 and shard_reduces(reduce, K, gradient_bytes)  # the round as the bench's runs take it
            predicted = aws_round(compute, K, gradient_bytes, local, in_shard=in_shard)["seconds"]
        measured = runs[K]["seconds_per_epoch"]
        rows[K] = {"predicted": predicted, "measured": measured, "ratio": predicted / measured if measured else None}
    return {
        "latencies": {
            "s3_latency": local.s3_latency,
            "bandwidth": local.bandwidth,
            "s3_put_latency": local.s3_put_latency,
            "s3_put_seconds_per_mib": local.s3_put_seconds_per_mib,
            "dynamodb_latency": local.dynamodb_latency,
        },
        "rows": rows,
        "within_tolerance": all(
            row["ratio"] is not None and abs(row["ratio"] - 1) <= MODEL_TOLERANCE for row in rows.values()
        ),
    }
