"""Where every choice of a schedule comes from.

`RandomDecisions(seed)`: one `random.Random(seed)`. Scheduling choices (which delivery runs next) are `choice`;
faults are `fault`: each fired fault gets the next number, and `disabled` numbers are drawn just the same (the RNG
stream stays aligned) but not injected, which is what the shrinker removes.

`ScriptedDecisions(script)`: the exhaustive search's. Each choice point takes its option from `script` (then 0 past
its end) and records how many options it had, so that a depth-first search can enumerate every sequence.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fault:
    number: int
    kind: str
    where: str
    detail: Any = None
    disabled: bool = False

    def describe(self) -> str:
        detail = "" if self.detail is None else f" ({_short(self.detail)})"
        return f"#{self.number} {self.kind} at {self.where}{detail}{' [disabled]' if self.disabled else ''}"


def _short(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


class RandomDecisions:
    def __init__(self, seed: int, *, disabled: set[int] | frozenset[int] = frozenset()):
        self.seed = seed
        self.rng = random.Random(seed)
        self.disabled = set(disabled)
        self.faults: list[Fault] = []  # fired, the disabled ones included
        self.counts: Counter = Counter()  # injected faults by kind

    def choice(self, n: int, what: str = "") -> int:
        return 0 if n <= 1 else self.rng.randrange(n)

    def uniform(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high)

    def pick(self, options: list, what: str = "") -> Any:
        return options[self.choice(len(options), what)]

    def fault(self, kind: str, probability: float, where: str, detail: Callable[[random.Random], Any] | None = None):
        """Whether fault `kind` fires here (None if not; else its detail, or True). Draws the same numbers whether
        the fault is disabled or not."""
        if probability <= 0:
            return None
        fired = self.rng.random() < probability
        if not fired:
            return None
        value = detail(self.rng) if detail is not None else True
        number = len(self.faults) + 1
        disabled = number in self.disabled
        self.faults.append(Fault(number, kind, where, None if value is True else value, disabled))
        if disabled:
            return None
        self.counts[kind] += 1
        return value

    def injected(self) -> list[Fault]:
        return [fault for fault in self.faults if not fault.disabled]


class ScriptedDecisions(RandomDecisions):
    """Choices from a script; faults are choices too (0: none, 1: the fault), within a budget of faults per
    schedule, and only of the kinds the exhaustive search explores."""

    def __init__(self, script: list[int], *, kinds: frozenset[str], max_faults: int, seed: int = 0):
        super().__init__(seed)
        self.script, self.kinds, self.max_faults = list(script), kinds, max_faults
        self.points: list[int] = []  # the options each choice point had, in order
        self.taken: list[int] = []  # the option taken at each
        self.labels: list[str] = []
        self.on_new_point = None  # called with the label before a choice past the script (the search prunes there)

    def _next(self, n: int, what: str) -> int:
        index = len(self.points)
        chosen = self.script[index] if index < len(self.script) else 0
        # before the point is recorded: a point cut as seen before must not have its options pushed again
        if self.on_new_point is not None and index >= len(self.script):
            self.on_new_point(what)
        self.points.append(n)
        self.taken.append(chosen)
        self.labels.append(what)
        return chosen

    def choice(self, n: int, what: str = "") -> int:
        return 0 if n <= 1 else self._next(n, what)

    def uniform(self, low: float, high: float) -> float:
        return (low + high) / 2

    def fault(self, kind: str, probability: float, where: str, detail=None):
        if kind not in self.kinds or len(self.injected()) >= self.max_faults:
            return None
        if not self._next(2, f"{kind} at {where}"):
            return None
        value = detail(_Midpoint()) if detail is not None else True
        self.faults.append(Fault(len(self.faults) + 1, kind, where, None if value is True else value))
        self.counts[kind] += 1
        return value


class _Midpoint:
    """The fixed 'random' numbers of a scripted fault's details."""

    def random(self) -> float:
        return 0.5

    def uniform(self, low: float, high: float) -> float:
        return (low + high) / 2

    def choice(self, options):
        return options[0]

    def randrange(self, n: int) -> int:
        return 0
