"""`make bench`: plain NumPy against `lnn local` at each granularity, on the classic LNN job.

The job: a 12288-20-7-5-1 network (relu, relu, relu, sigmoid) on 209 seeded random 64x64x3 "images", 2500
epochs. Plain NumPy is the full-batch loop `network.train_reference`; each LNN run is timed from its launch to
its finish (the run record's `seconds`), on one emulator deployed once (reported on its own line). Layer
granularity runs fewer epochs (`--layer-epochs`) and is compared per epoch.
"""

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from lnn_core import network

from .cloud.deploy import PROJECT_DIR, deploy_to_emulator
from .cloud.emulator import running_emulator
from .cloud.local import run_local
from .main import add_runtime_options

NEURONS = [20, 7, 5, 1]
ACTIVATIONS = ["relu", "relu", "relu", "sigmoid"]
LEARNING_RATE = 0.0075
SEED = 1
AUTO_TARGET = 1.3  # auto may take at most this many times plain NumPy's time


def classic_job(examples: int, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """209 random 64x64x3 uint8 images (scaled by 1/255 on loading, as LNN did) with random 0/1 labels."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(examples, 64 * 64 * 3), dtype=np.uint8)
    y = rng.integers(0, 2, size=examples).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    return buffer.getvalue(), X.astype(np.float64) / 255.0, y.astype(np.float64)


def plain_numpy_seconds(X: np.ndarray, y: np.ndarray, epochs: int) -> tuple[float, list[float]]:
    started = time.perf_counter()
    _, costs = network.train_reference(X, y, neurons=NEURONS, activations=ACTIVATIONS, learning_rate=LEARNING_RATE,
                                       epochs=epochs, seed=SEED)
    return time.perf_counter() - started, costs


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
    parser.add_argument("--epochs", type=int, default=2500, help="epochs of plain NumPy, auto and epoch")
    parser.add_argument("--layer-epochs", type=int, default=10, help="epochs of the layer-granularity run")
    parser.add_argument("--examples", type=int, default=209)
    parser.add_argument("--out", default="out/bench", help="where bench.json and the logs go")
    add_runtime_options(parser)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for the table rather than rich's 80 columns
        console = Console(width=200)
    data, X, y = classic_job(args.examples)
    numpy_seconds, numpy_costs = plain_numpy_seconds(X, y, args.epochs)
    console.print(f"plain NumPy: {args.epochs} epochs in {numpy_seconds:.2f} s")
    rows = {"numpy": {"epochs": args.epochs, "seconds": numpy_seconds}}
    with running_emulator(out / "emulator.log") as emulator:
        started = time.monotonic()
        deployment = deploy_to_emulator(emulator, out / "deploy.log", stack_name="LnnStack")
        setup = {"emulator_start": emulator.started_seconds, "deploy": round(time.monotonic() - started, 2)}
        console.print(f"emulator start {setup['emulator_start']:.1f} s, deploy {setup['deploy']:.1f} s (not counted below)")
        session = emulator.session()
        with open(out / "lambda.log", "w") as log:
            for granularity, epochs in (("auto", args.epochs), ("epoch", args.epochs), ("layer", args.layer_epochs)):
                parameters = {"epochs": epochs, "learning_rate": LEARNING_RATE, "neurons": NEURONS,
                              "activations": ACTIVATIONS, "seed": SEED, "granularity": granularity}
                with console.status(f"lnn local --granularity {granularity}, {epochs} epochs..."):
                    result = run_local(session, deployment.outputs, parameters, data, log_stream=log,
                                       run_id=f"bench-{granularity}", concurrency=args.concurrency,
                                       container_cpus=args.container_cpus)
                results = result.results()
                if results["status"] != "succeeded" or results["costs"] != numpy_costs[:epochs]:
                    console.print(f"[red]{granularity}: {results['status']} {results.get('reason', '')}; costs equal to "
                                  f"plain NumPy: {results['costs'] == numpy_costs[:epochs]}[/]")
                rows[granularity] = results
                console.print(f"{granularity}: {epochs} epochs in {results['seconds']:.2f} s")
    report = {"setup": setup, "cold_import_seconds": cold_import_seconds(),
              "layer_megabytes": layer_asset_megabytes(PROJECT_DIR / "cdk.out"), "runs": rows}
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    console.print(bench_table(rows, numpy_seconds / args.epochs))
    console.print(f"handler cold import {report['cold_import_seconds']:.2f} s (target 0.5 s); NumPy layer "
                  f"{report['layer_megabytes'] or float('nan'):.1f} MB unzipped (target 60 MB); details in {out / 'bench.json'}")
    auto_ratio = rows["auto"]["seconds"] / numpy_seconds
    console.print(f"auto / plain NumPy = {auto_ratio:.2f} (target {AUTO_TARGET})")
    return 0


def bench_table(rows: dict, numpy_per_epoch: float) -> Table:
    table = Table(title="LNN benchmark: 12288-20-7-5-1, per epoch", title_justify="left")
    for column in ("mode", "epochs", "s / epoch", "x NumPy", "invocations / epoch", "AWS requests / epoch",
                   "busiest step", "S3 MB in / out per epoch"):
        table.add_column(column, justify="left" if column in ("mode", "AWS requests / epoch", "busiest step") else "right")
    table.add_row("plain NumPy", str(rows["numpy"]["epochs"]), f"{numpy_per_epoch:.4f}", "1.00", "-", "-", "-", "-")
    for mode in ("auto", "epoch", "layer"):
        results = rows[mode]
        per_epoch = results["per_epoch"]
        seconds = results["seconds"] / max(1, results["epochs"])
        table.add_row(
            mode, str(results["epochs"]), f"{seconds:.4f}", f"{seconds / numpy_per_epoch:.2f}", f"{per_epoch['invocations']:.3f}",
            ", ".join(f"{service} {count:g}" for service, count in per_epoch["aws_requests"].items()),
            ", ".join(f"{service} {count}" for service, count in results["busiest_step"].items()),
            f"{per_epoch['s3_bytes_in'] / 2**20:.2f} / {per_epoch['s3_bytes_out'] / 2**20:.2f}",
        )
    return table


if __name__ == "__main__":
    sys.exit(main())
