"""What a run leaves behind and shows: results.json, model.npz, cost.png, the summary and the SNS message."""

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from lnn_core.aws import pricing
from lnn_core.protocol import end_message


def plot_costs(costs: list[float], path: Path, *, run_id: str, test_costs: dict[int, float] | None = None) -> None:
    """The cost curve, one point per epoch, epoch 1 first; and the test set's cost where the run evaluated it."""
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    epochs = range(1, len(costs) + 1)
    axes.plot(
        epochs,
        costs,
        color="tab:blue",
        linewidth=2,
        marker="o" if len(costs) <= 50 else None,
        markersize=3,
        label="training (before the epoch's update)",
    )
    if test_costs:
        axes.plot(
            list(test_costs),
            list(test_costs.values()),
            color="tab:orange",
            linewidth=2,
            marker="s",
            markersize=3,
            label="test set (after the epoch's update)",
        )
        axes.legend()
    axes.set_xlabel("epoch")
    axes.set_ylabel("cost")
    final = f"final cost {costs[-1]:.4f}" if costs else "no epoch completed"
    axes.set_title(f"LNN run {run_id}: {final}")
    axes.grid(True, alpha=0.3)
    if costs:
        axes.set_xlim(1, max(2, len(costs)))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_outputs(out_dir: Path, results: dict[str, Any], model: bytes | None) -> list[Path]:
    """results.json, model.npz (when there is one) and cost.png in `out_dir`; returns the paths written."""
    written = [out_dir / "results.json"]
    written[0].write_text(json.dumps(results, indent=2) + "\n")
    if model is not None:
        (out_dir / "model.npz").write_bytes(model)
        written.append(out_dir / "model.npz")
    test_costs = {int(epoch): cost for epoch, cost in (results.get("test_costs") or {}).items()}
    plot_costs(results["costs"], out_dir / "cost.png", run_id=results["run_id"], test_costs=test_costs)
    written.append(out_dir / "cost.png")
    return written


def show_notification(console: Console, notification: dict[str, Any]) -> None:
    """One SNS message: subject, its attributes (`status`, then the `message_id` a subscriber deduplicates by) and
    the JSON body."""
    body = notification["body"]
    text = json.dumps(body, indent=2, sort_keys=True) if isinstance(body, (dict, list)) else str(body)
    shown = sorted(notification["attributes"].items(), key=lambda attribute: attribute[0] != "status")  # status first
    attributes = ", ".join(f"{name}={value}" for name, value in shown) or "none"
    console.print(f"[bold]SNS message received[/]: {notification['subject'] or '(no subject)'}", highlight=False)
    console.print(Panel(text, title="message", subtitle=f"attributes: {attributes}", expand=False), highlight=False)


WARNING_MARK = "⚠"


def show_warnings(console: Console, final: dict[str, Any] | None) -> None:
    """A finished run's warnings (a model that learned nothing), one line each."""
    for warning in (final or {}).get("warnings") or []:
        console.print(Text.assemble((f"{WARNING_MARK} warning: ", "bold yellow"), warning))


def warning_mark(final: dict[str, Any] | None) -> str:
    """The runs table's mark of a run with warnings, e.g. '⚠ 2'; '' without."""
    count = len((final or {}).get("warnings") or [])
    return f"{WARNING_MARK} {count}" if count else ""


def summary_table(results: dict[str, Any]) -> Table:
    table = Table(title=f"Run {results['run_id']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("status", results["status"]),
        ("epochs", str(results["epochs"])),
        ("final cost", f"{results['costs'][-1]:.6f}" if results["costs"] else "-"),
        *end_message.figures(results),
        ("time", f"{results['seconds']:.1f} s (launch to finish)"),
        ("invocations", f"{results['invocations']} steps, {results['deliveries']} deliveries"),
        ("AWS requests", ", ".join(f"{service} {count}" for service, count in results["aws_requests"].items())),
        ("S3 bytes", f"{results['s3_bytes_in']:,} in, {results['s3_bytes_out']:,} out"),
        ("AWS cost", pricing.cost_text(results.get("aws_cost"))),
    ]
    if results.get("reason"):
        rows.insert(1, ("reason", results["reason"]))
    if results.get("warnings"):
        rows[0] = ("status", f"{results['status']} with {end_message.warning_count(results)}")
        rows[1:1] = [(Text(f"{WARNING_MARK} warning", "bold yellow"), warning) for warning in results["warnings"]]
    if results.get("chaos"):
        chaos = results["chaos"]
        rows.append(
            (
                "chaos",
                f"{chaos['faults']} faults injected ({chaos['duplicates']} duplicates, {chaos['delays']} delays, "
                f"{chaos['crashes_before'] + chaos['crashes_after']} crashes, {chaos['losses']} losses); "
                f"{chaos['step_bodies']} step bodies executed",
            )
        )
    for name, value in rows:
        table.add_row(name, value)
    return table


def plain_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned text lines, every column right-aligned but the last: a run's thousands of epochs print in
    milliseconds, where a rich Table takes most of a second."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: list[str]) -> str:
        aligned = [str(cell).rjust(width) for cell, width in zip(cells[:-1], widths)]
        return "  ".join([*aligned, str(cells[-1])]).rstrip()

    return [line(headers), "  ".join("-" * width for width in widths), *(line(row) for row in rows)]
