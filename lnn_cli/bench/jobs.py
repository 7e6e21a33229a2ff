"""`make bench`'s classic and mini-batch jobs: their data and parameters (`Job`, `make_jobs`), plain NumPy against
`lnn local` at each granularity on one emulator (`run_jobs`), and the figures of their rows (medians, ratios).

The classic job: a 12288-20-7-5-1 network (relu, relu, relu, sigmoid) on 209 seeded random 64x64x3 "images", 2500
epochs of full-batch gradient descent. The mini-batch job: a 100-32-16-1 network (relu, relu, sigmoid) on 4,000
seeded synthetic examples of 100 features, 100 epochs of adam in batches of 64 (63 batches an epoch).

Plain NumPy is `training.train_reference` with the job's options, on as many BLAS threads as each container; each
LNN run is timed from its launch to its finish (the run record's `seconds`), on one emulator deployed once
(reported on its own line). Layer granularity runs fewer epochs and is compared per epoch. The mini-batch job runs
plain NumPy and auto three times, alternating, and reports the medians.
"""

import argparse
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import numpy as np
from rich.console import Console
from threadpoolctl import threadpool_limits

from lnn_cli.bench.figures import training_seconds
from lnn_cli.cloud.deploy import deploy_to_emulator
from lnn_cli.cloud.emulator import running_emulator
from lnn_cli.cloud.local import run_local
from lnn_core.ml import batching, training

NEURONS = [20, 7, 5, 1]
ACTIVATIONS = ["relu", "relu", "relu", "sigmoid"]
LEARNING_RATE = 0.0075
SEED = 1
AUTO_TARGET = 1.3  # auto may take at most this many times plain NumPy's time per epoch

MINIBATCH_NEURONS = [32, 16, 1]
MINIBATCH_ACTIVATIONS = ["relu", "relu", "sigmoid"]
MINIBATCH_OPTIONS = {"learning_rate": 0.001, "batch_size": 64, "optimizer": "adam"}
GRANULARITIES = ("auto", "epoch", "layer")


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
        jobs.append(
            Job(
                "classic",
                f"classic LNN job: 12288-20-7-5-1 on {args.examples} examples, full batch, gd",
                data,
                X,
                y,
                {"neurons": NEURONS, "activations": ACTIVATIONS, "learning_rate": LEARNING_RATE, "seed": SEED},
                {"numpy": args.epochs, "auto": args.epochs, "epoch": args.epochs, "layer": args.layer_epochs},
                repeats=args.repeats,
            )
        )
    if args.job in ("minibatch", "all"):
        data, X, y = minibatch_data(args.minibatch_examples)
        batches = batching.batch_count(len(y), MINIBATCH_OPTIONS["batch_size"])
        jobs.append(
            Job(
                "minibatch",
                f"mini-batch job: 100-32-16-1 on {args.minibatch_examples} examples, "
                f"batch 64 ({batches} batches / epoch), adam",
                data,
                X,
                y,
                {"neurons": MINIBATCH_NEURONS, "activations": MINIBATCH_ACTIVATIONS, "seed": SEED} | MINIBATCH_OPTIONS,
                {
                    "numpy": args.minibatch_epochs,
                    "auto": args.minibatch_epochs,
                    "epoch": args.minibatch_epochs,
                    "layer": args.minibatch_layer_epochs,
                },
                repeats=args.minibatch_repeats,
            )
        )
    return jobs


def run_jobs(
    jobs: list[Job], args: argparse.Namespace, out: Path, console: Console
) -> tuple[dict[str, dict], dict, list[str]]:
    """Each job's plain NumPy and `lnn local` at each granularity on one emulator, deployed once: the rows of each job
    by mode, the emulator's start and deploy seconds, and the runs that failed."""
    rows: dict[str, dict] = {job.name: {} for job in jobs}
    failures = []
    with running_emulator(out / "emulator.log") as emulator:
        started = time.monotonic()
        deployment = deploy_to_emulator(emulator, out / "deploy.log", stack_name="LnnStack")
        setup = {"emulator_start": emulator.started_seconds, "deploy": round(time.monotonic() - started, 2)}
        console.print(
            f"emulator start {setup['emulator_start']:.1f} s, deploy {setup['deploy']:.1f} s (not counted below)"
        )
        session = emulator.session()

        def lnn_run(job: Job, granularity: str, costs: list[float], attempt: int) -> dict:
            epochs = job.epochs[granularity]
            with console.status(f"{job.name}: lnn local --granularity {granularity}, {epochs} epochs..."):
                result = run_local(
                    session,
                    deployment.outputs,
                    job.run_parameters(granularity),
                    job.data,
                    log_stream=log,
                    run_id=f"bench-{job.name}-{granularity}-{attempt}",
                    concurrency=args.concurrency,
                    container_cpus=args.container_cpus,
                )
            results = result.results()
            same = results["costs"] == costs[:epochs]
            if results["status"] != "succeeded" or not same:
                failures.append(f"{job.name} {granularity}")
                console.print(
                    f"[red]{job.name} {granularity}: {results['status']} {results.get('reason', '')}; "
                    f"costs equal to plain NumPy: {same}[/]"
                )
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
                rows[job.name]["numpy"] = {
                    "epochs": job.epochs["numpy"],
                    "seconds": median(numpy_runs),
                    "all_seconds": numpy_runs,
                }
                rows[job.name]["auto"] = median_run(auto_runs)
                for granularity in ("epoch", "layer"):
                    rows[job.name][granularity] = lnn_run(job, granularity, costs, 1)
    return rows, setup, failures


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


def auto_ratio(rows: dict) -> float:
    """auto's time per epoch, launch to finish, over plain NumPy's."""
    return per_epoch_seconds(rows["auto"]) / per_epoch_seconds(rows["numpy"])


def auto_training_ratio(rows: dict) -> float | None:
    """auto's epochs' own time (`training_seconds`) per epoch over plain NumPy's."""
    own = rows["auto"].get("training_seconds")
    return None if own is None else own / max(1, rows["auto"]["epochs"]) / per_epoch_seconds(rows["numpy"])
