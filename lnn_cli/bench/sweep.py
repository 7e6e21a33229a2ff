"""Sweeps measured on a stack and projected onto AWS: `python -m lnn_cli.bench.sweep SWEEP [SWEEP ...]`.

On the stack the environment points at (`lnn up`), for each sweep that has ended: its wall time (from its start to
its last trial's end), and its projection onto AWS from its trials' own usage. A trial's chain on AWS takes its
deliveries' billed time (the usage's MB-ms over the function's memory) plus, per delivery, an Invoke call and an
asynchronous hop (`projection.AwsAssumptions`). One after another, a sweep takes the sum of its trials' chains;
with every trial at once (deploy with `max_running_runs` and `reserved_concurrency` at least the trials), the
longest chain. Its dollars are the trials' `pricing.run_cost`, the same either way.
"""

import argparse
import sys
import time

import boto3

from lnn_cli.bench.projection import AwsAssumptions
from lnn_cli.deployed_stack import open_stack
from lnn_cli.sweeps.commands import StackSweeps
from lnn_core.aws.pricing import run_cost
from lnn_core.aws.usage import DEFAULT_MEMORY_MB, USAGE_PREFIX
from lnn_core.sweep.results import totals, trial_rows


def chain_seconds(run: dict, assumptions: AwsAssumptions, memory_mb: int) -> float:
    """A trial's chain on AWS: its billed seconds plus an Invoke call and a hop per delivery."""
    deliveries = int(run.get(f"{USAGE_PREFIX}deliveries", 0))
    billed = int(run.get(f"{USAGE_PREFIX}mb_ms", 0)) / memory_mb / 1000
    return billed + deliveries * (assumptions.invoke_latency + assumptions.hop_latency)


def projection(runs: list[dict], assumptions: AwsAssumptions, memory_mb: int) -> dict:
    chains = [chain_seconds(run, assumptions, memory_mb) for run in runs]
    costs = [run_cost(run) for run in runs]
    return {
        "trials": len(runs),
        "one_after_another_seconds": sum(chains),
        "all_at_once_seconds": max(chains, default=0.0),
        "dollars": sum(cost["dollars"] for cost in costs if cost),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnn_cli.bench.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", help="the sweeps' names")
    parser.add_argument("--stack", default="LnnStack")
    parser.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB, help="the functions' memory_size")
    args = parser.parse_args(argv)
    stack = open_stack(boto3.Session(), args.stack)
    sweeps, assumptions = StackSweeps(stack), AwsAssumptions()
    print(
        f"{'sweep':<16}{'trials':>7}{'measured s':>12}{'AWS s, one after another':>26}"
        f"{'AWS s, all at once':>20}{'AWS $':>10}"
    )
    for sweep_id in args.sweeps:
        record = sweeps.record(sweep_id)
        runs = sweeps.runs(record)
        total = totals(record, trial_rows(record, runs, prices=None, local=True), time.time())
        if not total["done"]:
            print(f"{sweep_id}: not done yet ({total['counts']})")
            continue
        aws = projection([run for run in runs.values() if run], assumptions, args.memory_mb)
        print(
            f"{sweep_id:<16}{aws['trials']:>7}{total['seconds']:>12.1f}{aws['one_after_another_seconds']:>26.1f}"
            f"{aws['all_at_once_seconds']:>20.1f}{aws['dollars']:>10.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
