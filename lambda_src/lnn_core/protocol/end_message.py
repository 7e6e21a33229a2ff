"""The one message that ends a run (SNS): its subject, its body and its idempotency key."""

from typing import Any

from lnn_core.aws import pricing

FIGURES = (  # the final metrics worth showing: (key, label, format)
    ("train_accuracy", "train accuracy", "{:.1%}"),
    ("test_accuracy", "test accuracy", "{:.1%}"),
    ("train_rmse", "train RMSE", "{:.4g}"),
    ("train_r2", "train R²", "{:.3f}"),
    ("test_rmse", "test RMSE", "{:.4g}"),
    ("test_r2", "test R²", "{:.3f}"),
    ("validation_accuracy", "validation accuracy", "{:.1%}"),
    ("validation_rmse", "validation RMSE", "{:.4g}"),
)


def figures(final: dict[str, Any]) -> list[tuple[str, str]]:
    """A finished run's figures as (label, text): accuracy for a classifier, RMSE and R² for a regression, and
    the epoch of an early stop."""
    shown = [(label, style.format(final[key])) for key, label, style in FIGURES if final.get(key) is not None]
    if final.get("stopped_early_at"):
        shown.append(("stopped early", f"after epoch {final['stopped_early_at']}, its cost below the threshold"))
    return shown


def warning_count(final: dict[str, Any] | None) -> str:
    """'1 warning', '3 warnings', or '' for a run whose model shows no sign of having learned nothing."""
    count = len((final or {}).get("warnings") or [])
    return f"{count} warning{'' if count == 1 else 's'}" if count else ""


def subject(run: dict[str, Any]) -> str:
    final = run.get("final") or {}
    if run["status"] == "succeeded":
        first = figures(final)[:1]
        warned = f" with {warning_count(final)}" if warning_count(final) else ""
        return f"LNN run {run['run_id']} succeeded{warned}: cost {final.get('cost', 0):.4g}" + "".join(
            f", {l} {v}" for l, v in first
        )
    return f"LNN run {run['run_id']} {run['status']}"


def message_id(run: dict[str, Any]) -> str:
    """The message's idempotency key: one per ending of the run, the same in every copy of the message. A run ends
    once, unless `lnn resume` continued it after a stop: its n-th continuation's ending has its own key ('/' is
    in no run id, so no key is another run's)."""
    continuations = run.get("continuations", 0)
    return f"lnn-run-{run['run_id']}" + (f"/continued-{continuations}" if continuations else "")


def message(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run["run_id"],
        "status": run["status"],
        "seed": (run.get("config") or {}).get("seed"),  # with the data and the config, it replays the run exactly
        "reason": run.get("reason"),
        "final": run.get("final"),
        "config": run.get("config"),
        "created_at": run.get("created_at"),
        "finished_at": run.get("finished_at"),
        "aws_cost": pricing.cost_text(pricing.run_cost(run)),  # the deliveries before the one that sends this
    }
