"""`make mutants`: the concurrency tests (those of `make test`) must fail when the exactly-once protocol is broken.

Each mutant is one edit of the protocol, applied to a copy of the project. The concurrency tests run on the
unchanged copy first (they must pass), then on each mutant (they must fail). An edit that no longer applies
(the code moved) is an error too, so that the check cannot silently test nothing.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
COPIED = ("app.py", "cdk.json", "pyproject.toml", "lambda_src", "lnn_stack", "lnn_cli", "tests", "cdk.out")
CONCURRENCY_TESTS = ("tests/integration/test_concurrency_scenarios.py", "tests/integration/test_concurrent_chaos.py",
                     "tests/integration/test_workers.py", "tests/integration/test_workers_chaos.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    original: str
    mutated: str


MUTANTS = (
    Mutant(
        "the commit without its condition on the committed step",
        "lambda_src/lnn_core/run_table.py",
        'condition = "#committed = :seen AND #status = :running"',
        'condition = "#status = :running"',
    ),
    Mutant(
        "a notification claim that always succeeds",
        "lambda_src/lnn_core/run_table.py",
        '"notified = :no AND (attribute_not_exists(notify_lease) OR notify_lease < :now)"',
        '":no = :no AND :now = :now"',
    ),
    Mutant(
        "a barrier that admits the same shard twice",
        "lambda_src/lnn_core/engine.py",
        "if len(before | {step_event.shard}) < step_event.shards:",
        "if len(before) + 1 < step_event.shards:",
    ),
    Mutant(
        "a re-send without the claim",
        "lambda_src/lnn_core/control.py",
        "    if not claimed:\n        return False\n    send(ports",
        "    send(ports",
    ),
)


def copy_project(destination: Path) -> None:
    for name in COPIED:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        elif source.exists():
            shutil.copy2(source, destination / name)


def apply(mutant: Mutant, root: Path) -> None:
    path = root / mutant.path
    text = path.read_text()
    if text.count(mutant.original) != 1:
        raise SystemExit(f"mutant {mutant.name!r} no longer applies: {mutant.path} must hold its original text once")
    path.write_text(text.replace(mutant.original, mutant.mutated))


def run_tests(root: Path) -> tuple[bool, float, str, list[str]]:
    """Run the concurrency tests of the copy at `root`: (passed, seconds, the summary line, the failures' lines)."""
    environment = {**os.environ, "PYTHONPATH": f"{root / 'lambda_src'}{os.pathsep}{root}"}
    tests = [test for test in CONCURRENCY_TESTS if (root / test).exists()]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-n", "2", "-m", "not slow", "-p", "no:cacheprovider", *tests],
        cwd=root, env=environment, capture_output=True, text=True,
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    details = [line for line in lines if line.startswith(("FAILED", "ERROR", "E "))][:40]
    return result.returncode == 0, time.monotonic() - started, lines[-1] if lines else result.stderr[-500:], details


def main() -> int:
    failures = []
    with tempfile.TemporaryDirectory(prefix="lnn-mutants-") as scratch:
        baseline = Path(scratch) / "baseline"
        baseline.mkdir()
        copy_project(baseline)
        passed, seconds, summary, details = run_tests(baseline)
        print(f"unmutated: {'passed' if passed else 'FAILED'} in {seconds:.0f} s ({summary})", flush=True)
        if not passed:
            print("\n".join(details), flush=True)  # which test failed unmutated, and why: the suite itself is wrong
            return 1
        for index, mutant in enumerate(MUTANTS, start=1):
            root = Path(scratch) / f"mutant-{index}"
            shutil.copytree(baseline, root)
            apply(mutant, root)
            passed, seconds, summary, _ = run_tests(root)
            verdict = "SURVIVED" if passed else "caught"
            print(f"mutant {index}, {mutant.name}: {verdict} in {seconds:.0f} s ({summary})", flush=True)
            if passed:
                failures.append(mutant.name)
    if failures:
        print(f"{len(failures)} of {len(MUTANTS)} mutants survived: {'; '.join(failures)}")
        return 1
    print(f"all {len(MUTANTS)} mutants caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
