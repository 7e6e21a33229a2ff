"""Shrinking a failing seed: its faults are numbered; each is disabled in turn (drawn as before, then left out, so
the numbers before it keep their meaning), and a removal is kept while the schedule still fails the same invariant.
Repeated until no single removal keeps it failing: a 1-minimal set of faults, printed with its replay command."""

from __future__ import annotations

from lnn_cli.simulate.result import Result
from lnn_cli.simulate.search.runner import run_seed


def shrink(seed: int, *, disabled: set[int] | None = None, mode: str = "direct", quiet: bool = False) -> Result | None:
    """The smallest failing schedule found for `seed` (None when it does not fail)."""
    disabled = set(disabled or ())
    current = run_seed(seed, disabled=disabled, mode=mode)
    if not current.failed:
        if not quiet:
            print(f"seed {seed} does not fail: nothing to shrink")
        return None
    invariant = current.violation.invariant
    runs, changed = 1, True
    if not quiet:
        print(f"seed {seed} fails {invariant} with {len(current.faults)} faults; shrinking", flush=True)
    while changed:
        changed = False
        for fault in list(current.faults):
            trial = run_seed(seed, disabled=disabled | {fault.number}, mode=mode)
            runs += 1
            if trial.failed and trial.violation.invariant == invariant:
                disabled.add(fault.number)
                current, changed = trial, True
                if not quiet:
                    print(
                        f"  without #{fault.number} ({fault.kind}): still fails, {len(trial.faults)} faults left",
                        flush=True,
                    )
    if not quiet:
        print(f"smallest schedule after {runs} runs: {len(current.faults)} fault(s) of the {seed} stream")
        for fault in current.faults:
            print(f"  {fault.describe()}")
        print(current.summary())
        print(f"make simulate SEED={seed}" + (f" DISABLE={','.join(map(str, sorted(disabled)))}" if disabled else ""))
    return current
