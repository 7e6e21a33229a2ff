"""What the page shows of a sweep (`GET /api/sweeps/<sweep_id>`): its trials ranked as `lnn sweep status` ranks them,
each with its cost curve, and the sweep's totals."""

import math
import time
from typing import Any

from lnn_cli.sweeps.commands import StackSweeps
from lnn_core.sweep import results as table
from lnn_core.sweep.controller import not_started


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def sweep_payload(stack, sweep_id: str, *, local: bool) -> dict[str, Any]:
    sweeps = StackSweeps(stack)
    record = sweeps.record(sweep_id)
    runs = sweeps.runs(record)
    rows = table.trial_rows(record, runs, prices=None, local=local, not_started=not_started(stack.ports, record, runs))
    validation, test = table.metric_names(rows)
    total = table.totals(record, rows, time.time())
    trials = []
    for row in table.ranked(rows):
        run = row.run or {}
        curve = [_number(item.get("cost")) for item in stack.ports.table.epoch_figures(run)] if row.run else []
        trials.append(
            {
                "run_id": row.trial["run_id"],
                "varied": {name: row.trial["varied"].get(name) for name in record.varied},
                "status": row.status,
                "epoch": run.get("progress_epoch", 0),
                "epochs": row.trial["parameters"].get("epochs"),
                "training_cost": _number(row.cost),
                "validation": _number(row.figure(validation)) if validation else None,
                "test": _number(row.figure(test)),
                "dollars": row.dollars,
                "warnings": len(row.final.get("warnings") or []),
                "collapsed": row.collapsed,  # its model learned nothing: ranked after the others
                "curve": curve,
            }
        )
    return {
        "sweep_id": record.sweep_id,
        "varied": record.varied,
        "created_at": record.created_at,
        "validation_metric": validation,
        "test_metric": test,
        "trials": trials,
        "done": total["done"],
        "seconds": total["seconds"],
        "dollars": total["dollars"],
        "best": total["best"],
        "counts": total["counts"],
    }
