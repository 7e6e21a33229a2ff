"""Running schedules: one seed, or many with their throughput and the faults injected by kind."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from lnn_cli.simulate.aws.world import MotoWorld
from lnn_cli.simulate.result import Result
from lnn_cli.simulate.simulator import Simulator

_WORLD: MotoWorld | None = None


def world() -> MotoWorld:
    """The process's one in-process AWS (created once: ~1 s), reset before every schedule."""
    global _WORLD
    if _WORLD is None:
        _WORLD = MotoWorld()
    return _WORLD


def close_world() -> None:
    """Stop the process's in-process AWS (mock_aws) and restore the environment it set."""
    global _WORLD
    if _WORLD is not None:
        _WORLD.close()
        _WORLD = None


ALLOWED: frozenset[str] = frozenset()  # --allow: invariants noted, not fatal


def run_seed(seed: int, *, disabled=frozenset(), trace: bool = False, mode: str = "direct") -> Result:
    return Simulator(world(), seed, disabled=set(disabled), trace=trace, mode=mode, allowed=ALLOWED).run()


@dataclass
class Summary:
    seeds: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    failures: list = field(default_factory=list)
    faults: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    deliveries: int = 0
    events: int = 0

    @property
    def per_second(self) -> float:
        return self.seeds / self.seconds if self.seconds else 0.0

    def report(self) -> str:
        lines = [
            f"{self.seeds} schedules in {self.seconds:.1f} s: {self.per_second:.1f} schedules/s "
            f"({1000 * self.seconds / max(1, self.seeds):.1f} ms each, "
            f"{1000 * self.cpu_seconds / max(1, self.seeds):.1f} ms "
            f"of CPU; {self.deliveries} deliveries, "
            f"{self.events} scheduler events)",
            "runs: " + ", ".join(f"{status or 'never created'} {n}" for status, n in self.statuses.most_common()),
            "faults injected: " + (", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items())) or "none"),
            f"failures: {len(self.failures)}",
        ]
        return "\n".join(lines)


def run_seeds(seeds, *, mode: str = "direct", stop_after: int | None = None, on_result=None) -> Summary:
    summary = Summary()
    started, cpu = time.perf_counter(), time.process_time()
    for seed in seeds:
        result = run_seed(seed, mode=mode)
        summary.seeds += 1
        summary.faults.update(result.counts)
        summary.statuses[result.status] += 1
        summary.deliveries += result.deliveries
        summary.events += result.events
        if on_result is not None:
            on_result(result)
        if result.failed:
            summary.failures.append(result)
            if stop_after is not None and len(summary.failures) >= stop_after:
                break
    summary.seconds, summary.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return summary
