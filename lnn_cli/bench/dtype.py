"""`python -m lnn_cli.bench.dtype`: float32 over float64, seconds per epoch, plain NumPy and `lnn local`.

Two jobs: the demo (`make demo`: the bundled breast cancer data, 455 x 30, and lnn_cli/data/demo-parameters.json,
20-7-5-1 at granularity layer) and the workers job's data (60,000 seeded synthetic 784-feature uint8 examples,
784-128-64-10, full-batch gd at granularity epoch, K = 1). Plain NumPy is `training.train_reference` on one BLAS
thread (threadpoolctl); `lnn local` runs on one emulator deployed with memory_size 1769 (the float64 large job is
refused at 1024), concurrency 2 and 1 BLAS thread per container, timed from its launch to its finish. float64 and
float32 alternate (ABBA...), `--repeats` times each; medians are reported, and every run's costs must equal plain
NumPy's in its dtype. Not a test: a measurement, written to out/bench-dtype/dtype.json and printed as
docs/performance.md's table.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from statistics import median

from threadpoolctl import threadpool_limits

from lnn_cli.bench.figures import epoch_intervals
from lnn_cli.bench.jobs import SEED
from lnn_cli.bench.workers import (
    WORKERS_ACTIVATIONS,
    WORKERS_MEMORY_MB,
    WORKERS_NEURONS,
    project_with_context,
    workers_data,
)
from lnn_cli.cloud.deploy import deploy_to_emulator
from lnn_cli.cloud.emulator import running_emulator
from lnn_cli.cloud.local import run_local
from lnn_cli.inputs import DEMO_CONFIG, DEMO_DATA
from lnn_core.ml import training
from lnn_core.ml.dataset import load_training_data
from lnn_core.ml.network import DTYPES

CONCURRENCY = 2
CONTAINER_CPUS = 1


def order(attempt: int) -> tuple[str, ...]:
    """float64 first, then float32 first, and so on: a machine whose load drifts favours neither."""
    return DTYPES if attempt % 2 == 0 else DTYPES[::-1]


def jobs(args: argparse.Namespace) -> dict[str, dict]:
    """Each job's .npz bytes, X and y as plain NumPy sees them (float64, uint8 scaled), its run parameters and the
    epochs of plain NumPy (more than the run's where an epoch takes milliseconds)."""
    demo_bytes = DEMO_DATA.read_bytes()
    demo = load_training_data(demo_bytes, source=str(DEMO_DATA))
    large_bytes, X, y = workers_data(args.examples)
    return {
        "demo": {
            "title": "demo: 455 x 30, 20-7-5-1, 60 epochs, gd, granularity layer",
            "data": demo_bytes,
            "X": demo.X,
            "y": demo.y,
            "parameters": json.loads(DEMO_CONFIG.read_text()),
            "numpy_epochs": args.demo_numpy_epochs,
        },
        "large": {
            "title": f"{args.examples:,} x 784, 784-128-64-10, {args.epochs} epochs, gd, epoch, K = 1",
            "data": large_bytes,
            "X": X,
            "y": y,
            "parameters": {
                "epochs": args.epochs,
                "neurons": WORKERS_NEURONS,
                "activations": WORKERS_ACTIVATIONS,
                "learning_rate": 0.5,
                "seed": SEED,
                "granularity": "epoch",
            },
            "numpy_epochs": args.epochs,
        },
    }


def plain_numpy(job: dict, dtype: str) -> tuple[float, list[float]]:
    """Seconds per epoch of `train_reference` on one BLAS thread, and its costs over the run's epochs."""
    options = {key: value for key, value in job["parameters"].items() if key != "granularity"}
    with threadpool_limits(limits=CONTAINER_CPUS):
        started = time.perf_counter()
        _, costs = training.train_reference(
            job["X"], job["y"], **(options | {"epochs": job["numpy_epochs"]}), dtype=dtype
        )
        seconds = time.perf_counter() - started
    return seconds / job["numpy_epochs"], costs[: job["parameters"]["epochs"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnn_cli.bench.dtype", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=60000, help="large job: examples")
    parser.add_argument("--epochs", type=int, default=4, help="large job: epochs of each run")
    parser.add_argument("--demo-numpy-epochs", type=int, default=3000, help="demo job: epochs of plain NumPy")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each dtype, alternating (medians)")
    parser.add_argument("--out", default="out/bench-dtype")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"load_average_before": [round(load, 2) for load in os.getloadavg()], "jobs": {}}
    failures = []
    selected = jobs(args)
    for name, job in selected.items():
        runs = {dtype: [] for dtype in DTYPES}
        for attempt in range(args.repeats):
            for dtype in order(attempt):
                runs[dtype].append(plain_numpy(job, dtype))
                print(f"{name} plain NumPy {dtype}: {runs[dtype][-1][0]:.5f} s/epoch", flush=True)
        job["costs"] = {dtype: runs[dtype][0][1] for dtype in DTYPES}
        report["jobs"][name] = {
            "title": job["title"],
            "numpy": {dtype: median(seconds for seconds, _ in runs[dtype]) for dtype in DTYPES},
            "numpy_all": {dtype: [seconds for seconds, _ in runs[dtype]] for dtype in DTYPES},
            "lnn": {dtype: [] for dtype in DTYPES},
        }
    with (
        project_with_context({"memory_size": WORKERS_MEMORY_MB}) as project,
        running_emulator(out / "emulator.log") as emulator,
    ):
        deployment = deploy_to_emulator(emulator, out / "deploy.log", stack_name="LnnStack", project_dir=project)
        session = emulator.session()
        with open(out / "lambda.log", "w") as log:
            for name, job in selected.items():
                for attempt in range(args.repeats):
                    for dtype in order(attempt):
                        parameters = job["parameters"] | {"dtype": dtype}
                        result = run_local(
                            session,
                            deployment.outputs,
                            parameters,
                            job["data"],
                            log_stream=log,
                            run_id=f"bench-dtype-{name}-{dtype}-{attempt}",
                            concurrency=CONCURRENCY,
                            container_cpus=CONTAINER_CPUS,
                        )
                        results = result.results()
                        intervals = epoch_intervals(result.epochs)
                        row = {
                            "seconds": results["seconds"],
                            "epochs": results["epochs"],
                            "load_average": round(os.getloadavg()[0], 2),
                            "median_interval": median(intervals) if intervals else None,
                            "costs_equal_plain_numpy": results["costs"] == job["costs"][dtype],
                        }
                        if results["status"] != "succeeded" or not row["costs_equal_plain_numpy"]:
                            failures.append(f"{name} {dtype}: {results['status']} {results.get('reason', '')}")
                        report["jobs"][name]["lnn"][dtype].append(row)
                        print(f"{name} lnn local {dtype}: {row}", flush=True)
    report["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    (out / "dtype.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def table(report: dict) -> str:
    """docs/performance.md's table: seconds per epoch by dtype and their ratio, plain NumPy and lnn local."""
    lines = ["| job | mode | float64 s/epoch | float32 s/epoch | float32 / float64 |", "|---|---|---|---|---|"]
    for job in report["jobs"].values():
        numpy = job["numpy"]
        lines.append(
            f"| {job['title']} | plain NumPy, 1 BLAS thread | {numpy['float64']:.4g} | {numpy['float32']:.4g} "
            f"| {numpy['float32'] / numpy['float64']:.2f} |"
        )
        per_epoch = {
            dtype: median(row["seconds"] / row["epochs"] for row in rows) for dtype, rows in job["lnn"].items()
        }
        lines.append(
            f"| | `lnn local`, launch to finish | {per_epoch['float64']:.4g} | {per_epoch['float32']:.4g} "
            f"| {per_epoch['float32'] / per_epoch['float64']:.2f} |"
        )
        intervals = {
            dtype: median(row["median_interval"] for row in rows)
            for dtype, rows in job["lnn"].items()
            if all(row["median_interval"] for row in rows)
        }
        if len(intervals) == 2:
            lines.append(
                f"| | `lnn local`, median epoch interval | {intervals['float64']:.4g} | "
                f"{intervals['float32']:.4g} | {intervals['float32'] / intervals['float64']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
