"""`make bench`: plain NumPy against `lnn local` at each granularity, on the classic LNN job and a mini-batch job.

The classic job: a 12288-20-7-5-1 network (relu, relu, relu, sigmoid) on 209 seeded random 64x64x3 "images", 2500
epochs of full-batch gradient descent. The mini-batch job: a 100-32-16-1 network (relu, relu, sigmoid) on 4,000
seeded synthetic examples of 100 features, 30 epochs of adam in batches of 64 (63 batches an epoch).

Plain NumPy is `network.train_reference` with the job's options, on as many BLAS threads as each container; each
LNN run is timed from its launch to its finish (the run record's `seconds`), on one emulator deployed once
(reported on its own line). Layer granularity runs fewer epochs and is compared per epoch. `--job` picks one job
(both by default). The mini-batch job runs plain NumPy and auto three times, alternating, and reports the medians.
"""

import argparse
import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

import numpy as np
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from lnn_core import network

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
            _, costs = network.train_reference(self.X, self.y, **(self.parameters | {"epochs": self.epochs["numpy"]}))
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
        batches = network.batch_count(len(y), MINIBATCH_OPTIONS["batch_size"])
        jobs.append(Job("minibatch", f"mini-batch job: 100-32-16-1 on {args.minibatch_examples} examples, "
                                     f"batch 64 ({batches} batches / epoch), adam",
                        data, X, y,
                        {"neurons": MINIBATCH_NEURONS, "activations": MINIBATCH_ACTIVATIONS, "seed": SEED} | MINIBATCH_OPTIONS,
                        {"numpy": args.minibatch_epochs, "auto": args.minibatch_epochs, "epoch": args.minibatch_epochs,
                         "layer": args.minibatch_layer_epochs},
                        repeats=args.minibatch_repeats))
    return jobs


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnn_cli.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=("all", "classic", "minibatch"), default="all", help="the job(s) to run")
    parser.add_argument("--epochs", type=int, default=2500, help="classic job: epochs of plain NumPy, auto and epoch")
    parser.add_argument("--layer-epochs", type=int, default=10, help="classic job: epochs of the layer-granularity run")
    parser.add_argument("--examples", type=int, default=209, help="classic job: examples")
    parser.add_argument("--minibatch-epochs", type=int, default=30,
                        help="mini-batch job: epochs of plain NumPy, auto and epoch")
    parser.add_argument("--minibatch-layer-epochs", type=int, default=2,
                        help="mini-batch job: epochs of the layer-granularity run")
    parser.add_argument("--repeats", type=int, default=1, help="classic job: runs of plain NumPy and of auto (medians)")
    parser.add_argument("--minibatch-repeats", type=int, default=3,
                        help="mini-batch job: runs of plain NumPy and of auto, alternating (medians)")
    parser.add_argument("--minibatch-examples", type=int, default=4000, help="mini-batch job: examples")
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
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    for job in jobs:
        console.print(bench_table(job.title, rows[job.name]))
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
