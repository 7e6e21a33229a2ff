"""`make bench`: plain NumPy against `lnn local` at each granularity, on the classic LNN job and a mini-batch job.

`--job` picks one job (all by default): the classic and the mini-batch jobs run on one emulator (`bench_jobs`), the
workers job on an emulator of its own (`bench_workers`, with its AWS projection in `bench_projection`). This module
reads the arguments, runs the jobs, measures the handlers' cold import and the NumPy layer's size, writes bench.json
and prints the tables (`bench_tables`).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from lnn_cli.bench.jobs import auto_ratio, auto_training_ratio, make_jobs, run_jobs
from lnn_cli.bench.tables import print_report
from lnn_cli.bench.workers import (
    MIN_WORKERS_EPOCHS,
    WORKERS_CONCURRENCY,
    WORKERS_K,
    WORKERS_MEMORY_MB,
    WORKERS_NEURONS,
    WORKERS_REPEATS,
    WorkersJob,
    run_workers_job,
)
from lnn_cli.cloud.deploy import PROJECT_DIR
from lnn_cli.parser_options import add_runtime_options
from lnn_core.ml.network import DTYPES
from lnn_core.ml.parameters import PARAMETERS, REDUCES, STAYING_WORKERS


def positive_ints(text: str) -> list[int]:
    """'1024,512,10' -> [1024, 512, 10]; anything else is argparse's usage error."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, e.g. 1,2; got {text!r}")
    return values


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnn_cli.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--job", choices=("all", "classic", "minibatch", "workers"), default="all", help="the job(s) to run"
    )
    parser.add_argument("--epochs", type=int, default=2500, help="classic job: epochs of plain NumPy, auto and epoch")
    parser.add_argument("--layer-epochs", type=int, default=10, help="classic job: epochs of the layer-granularity run")
    parser.add_argument("--examples", type=int, default=209, help="classic job: examples")
    parser.add_argument(
        "--minibatch-epochs", type=int, default=100, help="mini-batch job: epochs of plain NumPy, auto and epoch"
    )
    parser.add_argument(
        "--minibatch-layer-epochs", type=int, default=2, help="mini-batch job: epochs of the layer-granularity run"
    )
    parser.add_argument("--repeats", type=int, default=1, help="classic job: runs of plain NumPy and of auto (medians)")
    parser.add_argument(
        "--minibatch-repeats",
        type=int,
        default=3,
        help="mini-batch job: runs of plain NumPy and of auto, alternating (medians)",
    )
    parser.add_argument("--minibatch-examples", type=int, default=4000, help="mini-batch job: examples")
    parser.add_argument("--workers-examples", type=int, default=60000, help="workers job: examples")
    parser.add_argument(
        "--workers-epochs",
        type=int,
        default=WorkersJob.epochs,
        help="workers job: epochs of each run (the time per epoch is the median interval between epoch items; "
        "launch to finish over 10 is issue 19's end-to-end measure)",
    )
    parser.add_argument(
        "--workers-neurons",
        type=positive_ints,
        default=list(WORKERS_NEURONS),
        help="workers job: the layers after the input, e.g. 1024,512,10 (issue 19's larger job)",
    )
    parser.add_argument("--workers-dtype", choices=DTYPES, default="float64", help="workers job: the runs' dtype")
    parser.add_argument(
        "--workers-memory",
        type=int,
        default=WORKERS_MEMORY_MB,
        help="workers job: the stack's memory_size in MB (the larger job's K = 1 needs 3,520 in float64: use 3584)",
    )
    parser.add_argument(
        "--workers-k",
        type=positive_ints,
        default=list(WORKERS_K),
        help="workers job: the K to run, 1 and 2 among them, e.g. 1,2,4",
    )
    parser.add_argument(
        "--workers-repeats",
        type=int,
        default=WORKERS_REPEATS,
        help="workers job: runs of each K, in alternating order; the run of median launch to finish counts",
    )
    parser.add_argument(
        "--workers-reduce",
        choices=REDUCES,
        default=PARAMETERS["reduce"].default,
        help="workers job: the runs' parameter reduce (workers: the shard workers stay for every round; K at most "
        f"the concurrency, {WORKERS_CONCURRENCY})",
    )
    parser.add_argument("--out", default="out/bench", help="where bench.json and the logs go")
    add_runtime_options(parser)
    args = parser.parse_args(argv)
    if not {1, 2} <= set(args.workers_k):
        parser.error("--workers-k must include 1 and 2 (the speedup and the model's check compare them), e.g. 1,2,4")
    if args.workers_reduce == STAYING_WORKERS and max(args.workers_k) > WORKERS_CONCURRENCY:
        parser.error(
            f"--workers-reduce workers runs each K's workers at once, and the bench runs {WORKERS_CONCURRENCY} "
            f"containers: use --workers-k 1,2"
        )
    if args.workers_repeats < 1:
        parser.error(f"--workers-repeats must be at least 1; got {args.workers_repeats}")
    if args.workers_epochs < MIN_WORKERS_EPOCHS:
        parser.error(
            f"--workers-epochs must be at least {MIN_WORKERS_EPOCHS}: the time per epoch is the median interval "
            "between epoch items, and with fewer epochs one of the few intervals holds a container's first data "
            f"load (use --workers-epochs {MIN_WORKERS_EPOCHS} or more)"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for the table rather than rich's 80 columns
        console = Console(width=200)
    jobs = make_jobs(args)
    rows, setup, failures = run_jobs(jobs, args, out, console) if jobs else ({}, None, [])
    report = {
        "setup": setup,
        "cold_import_seconds": cold_import_seconds(),
        "layer_megabytes": layer_asset_megabytes(PROJECT_DIR / "cdk.out"),
        "jobs": {
            job.name: {
                "title": job.title,
                "parameters": job.parameters,
                "runs": rows[job.name],
                "auto_ratio": auto_ratio(rows[job.name]),
                "auto_training_ratio": auto_training_ratio(rows[job.name]),
            }
            for job in jobs
        },
    }
    if args.job in ("workers", "all"):
        report["jobs"]["workers"], failed = run_workers_job(args, out, console)
        failures += failed
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print_report(console, report, jobs, out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
