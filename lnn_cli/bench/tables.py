"""`make bench`'s tables and summary lines (rich): the classic and mini-batch jobs' modes, the workers job's runs,
the AWS projection, and the figures against their targets."""

from pathlib import Path

from rich.console import Console
from rich.table import Table

from lnn_cli.bench.figures import ROUND_STATES
from lnn_cli.bench.jobs import (
    AUTO_TARGET,
    GRANULARITIES,
    Job,
    auto_ratio,
    auto_training_ratio,
    per_epoch_seconds,
)
from lnn_cli.bench.workers import (
    COSTS_TOLERANCE,
    LARGE_COST_LIMIT,
    LARGE_TARGETS,
    MODEL_TOLERANCE,
    SPEEDUP_TARGET,
)


def bench_table(title: str, rows: dict) -> Table:
    numpy_per_epoch = per_epoch_seconds(rows["numpy"])
    table = Table(title=f"LNN benchmark, {title}; per epoch", title_justify="left")
    for column in (
        "mode",
        "epochs",
        "s / epoch",
        "x NumPy",
        "epoch's own s",
        "x NumPy (own)",
        "invocations / epoch",
        "AWS requests / epoch",
        "busiest step",
        "S3 MB in / out per epoch",
    ):
        table.add_column(
            column, justify="left" if column in ("mode", "AWS requests / epoch", "busiest step") else "right"
        )
    table.add_row(
        "plain NumPy",
        str(rows["numpy"]["epochs"]),
        f"{numpy_per_epoch:.4f}",
        "1.00",
        f"{numpy_per_epoch:.4f}",
        "1.00",
        "-",
        "-",
        "-",
        "-",
    )
    for mode in GRANULARITIES:
        results = rows[mode]
        per_epoch = results["per_epoch"]
        seconds = per_epoch_seconds(results)
        own = results.get("training_seconds") if mode == "auto" else None  # epoch, layer: their span holds steps
        own = None if own is None else own / max(1, results["epochs"])
        table.add_row(
            mode,
            str(results["epochs"]),
            f"{seconds:.4f}",
            f"{seconds / numpy_per_epoch:.2f}",
            "-" if own is None else f"{own:.4f}",
            "-" if own is None else f"{own / numpy_per_epoch:.2f}",
            f"{per_epoch['invocations']:.3f}",
            ", ".join(f"{service} {count:g}" for service, count in per_epoch["aws_requests"].items()),
            ", ".join(f"{service} {count}" for service, count in results["busiest_step"].items()),
            f"{per_epoch['s3_bytes_in'] / 2**20:.2f} / {per_epoch['s3_bytes_out'] / 2**20:.2f}",
        )
    return table


def workers_table(report: dict) -> Table:
    table = Table(title=f"LNN benchmark, {report['title']}", title_justify="left")
    for column in (
        "K",
        "epochs",
        "s / epoch (between epoch items)",
        "launch to epoch 1 s",
        "launch to finish s",
        "plain NumPy s / epoch",
        "requests / round (rounds 2..E)",
        "S3 MB in / out per round",
        "S3 MB in / out per delivery",
        "sequential round trips / round: S3+Lambda, DynamoDB (mean, most)",
        "busiest step",
        "mean s per delivery (rounds 2..E)",
    ):
        table.add_column(
            column,
            justify="left"
            if column.startswith(("requests", "busiest", "mean", "S3 MB in / out per d", "sequential"))
            else "right",
        )
    for K, results in report["runs"].items():
        rounds = results["per_round"]
        table.add_row(
            str(K),
            str(results["epochs"]),
            f"{results['seconds_per_epoch'] or float('nan'):.3f}",
            f"{results['launch_to_first_epoch'] or float('nan'):.2f}",
            f"{results['seconds']:.2f}",
            f"{report['plain_numpy'][K]['seconds_per_epoch']:.3f}",
            ", ".join(f"{service} {count:g}" for service, count in rounds["requests"].items()),
            f"{rounds['s3_bytes_in'] / 1e6:.2f} / {rounds['s3_bytes_out'] / 1e6:.2f} "
            f"(+{rounds['data_loads']} data loads)",
            ", ".join(
                f"{state} {entry['s3_bytes_in'] / entry['deliveries'] / 1e6:.2f} / "
                f"{entry['s3_bytes_out'] / entry['deliveries'] / 1e6:.2f}"
                for state, entry in results["deliveries_by_state"].items()
                if state in ("start", *ROUND_STATES)
            ),
            trips_cell(results.get("round_trips", {})),
            ", ".join(f"{service} {count}" for service, count in results["busiest_step"].items()),
            ", ".join(
                f"{state} {entry['mean_seconds']:.3f} (x{entry['deliveries']})"
                for state, entry in results["deliveries_by_state"].items()
            ),
        )
    return table


def trips_cell(trips: dict) -> str:
    if not trips.get("rounds"):
        return "-"
    storage, dynamodb = trips["storage_or_invoke"], trips["dynamodb"]
    return f"{storage['mean']:g} ({storage['most']}), {dynamodb['mean']:g} ({dynamodb['most']})"


def projection_table(projection: dict) -> Table:
    design = {
        "built": "LNN's round in slices (ScatterReduce through S3)",
        "staying": "workers that stay across rounds (reduce workers, session 36)",
        "persistent": "ScatterReduce by workers alive across rounds, the ideal design (not built)",
    }[projection["design"]]
    table = Table(title=f"Projection on AWS, arm64 functions, per epoch (one round): {design}", title_justify="left")
    for column in (
        "K",
        "memory MB",
        "compute s",
        "communication s",
        "s / epoch",
        "speedup",
        "$ / epoch",
        "$ / K = 1's",
    ):
        table.add_column(column, justify="right")
    for row in projection["rows"]:
        best = " (least)" if row["workers"] == projection["best_workers"] else ""
        table.add_row(
            f"{row['workers']}{best}",
            f"{row['memory_mb']:,}",
            f"{row['compute']:.3f}",
            f"{row['communication']:.3f}",
            f"{row['seconds']:.3f}",
            f"{row['speedup']:.2f}",
            f"{row['cost']:.7f}",
            f"{row['cost_ratio']:.2f}",
        )
    return table


def model_check_line(check: dict) -> str:
    """The projection fed this machine's latencies against the measured K = 1 and K = 2 epochs, one line."""
    latencies = check["latencies"]
    rows = ", ".join(
        f"K = {K}: predicted {row['predicted']:.3f} s, measured {row['measured'] or float('nan'):.3f} s "
        f"({row['ratio'] or float('nan'):.2f})"
        for K, row in check["rows"].items()
    )
    verdict = "within" if check["within_tolerance"] else "NOT within"
    return (
        f"workers: the model on this machine's latencies (S3 GET {latencies['s3_latency'] * 1000:.1f} ms, "
        f"{latencies['bandwidth'] / 1e6:.0f} MB/s, PUT {latencies['s3_put_latency'] * 1000:.1f} ms + "
        f"{latencies['s3_put_seconds_per_mib'] * 1000:.1f} ms per MiB, "
        f"DynamoDB {latencies['dynamodb_latency'] * 1000:.1f} ms): {rows}; "
        f"{verdict} {MODEL_TOLERANCE:.0%}"
    )


def targets_line(projection: dict) -> str:
    """Issue 19's targets for the larger job against a projection: speedups at K = 8 and 16, and K = 16's cost."""
    rows = {row["workers"]: row for row in projection["rows"]}
    parts = [
        f"K = {K} {rows[K]['speedup']:.2f} x (target {target:g})" for K, target in LARGE_TARGETS.items() if K in rows
    ]
    if 16 in rows:
        parts.append(f"K = 16's cost {rows[16]['cost_ratio']:.2f} x K = 1's (limit {LARGE_COST_LIMIT:g})")
    return f"{projection['design']}: " + "; ".join(parts)


def tails_line(tails: dict) -> str:
    """The persistent design's speedups when every request's latency varies (`projection.tail_speedups`)."""
    parts = [
        f"lognormal sigma {spread:g}: " + ", ".join(f"K = {K} {speedup:.2f} x" for K, speedup in rows.items())
        for spread, rows in tails.items()
    ]
    return "workers, persistent, with latency tails (each wait the slowest of K): " + "; ".join(parts)


def print_report(console: Console, report: dict, jobs: list[Job], out: Path) -> None:
    """The tables of `report` (bench.json's content), then its figures against their targets, one line each."""
    rows = {job.name: report["jobs"][job.name]["runs"] for job in jobs}
    workers = report["jobs"].get("workers")
    for job in jobs:
        console.print(bench_table(job.title, rows[job.name]))
    if workers is not None:
        console.print(workers_table(workers))
        for projection in (
            workers["projection"],
            workers.get("staying_projection"),
            workers["persistent_projection"],
        ):
            if projection:
                console.print(projection_table(projection))
                console.print(f"workers, against the larger job's targets: {targets_line(projection)}")
        if workers.get("persistent_tails"):
            console.print(tails_line(workers["persistent_tails"]))
        if workers["model_check"]:
            console.print(model_check_line(workers["model_check"]))
        console.print(
            f"workers: K = 2 over K = 1 launch to finish {workers['end_to_end_speedup']:.2f} x "
            f"(target {SPEEDUP_TARGET}; the median runs of these, launch to finish in s: K = 1 "
            f"{workers['runs'][1].get('repeats_seconds')}, K = 2 {workers['runs'][2].get('repeats_seconds')})"
        )
        console.print(
            f"workers: K = 2 over K = 1, time per epoch between epoch items: "
            f"{workers['speedup'] or float('nan'):.2f} x "
            f"(target {SPEEDUP_TARGET}, at most 2 on 2 cores); projection from T1 = "
            f"{workers['compute_seconds'] or float('nan'):.3f} s; costs within a relative "
            f"{workers['costs_relative_difference']:.1e} of K = 1's (limit {COSTS_TOLERANCE:g}); "
            f"machine load before the runs {workers['load_average']}"
        )
    console.print(
        f"handler cold import {report['cold_import_seconds']:.2f} s (target 0.5 s); NumPy layer "
        f"{report['layer_megabytes'] or float('nan'):.1f} MB unzipped (target 60 MB); details in {out / 'bench.json'}"
    )
    for job in jobs:
        own = auto_training_ratio(rows[job.name])
        fixed = rows[job.name]["auto"]["seconds"] - (rows[job.name]["auto"].get("training_seconds") or 0)
        console.print(
            f"{job.name}: auto / plain NumPy per epoch = {auto_ratio(rows[job.name]):.2f} launch to finish, "
            f"{own or float('nan'):.2f} in the epochs' own time (target {AUTO_TARGET}); auto's time outside "
            f"its epochs (launch, data, commits, finish) {fixed:.2f} s"
        )
