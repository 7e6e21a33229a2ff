"""A sweep: base parameters and, per parameter, the values to try; its trials, generated deterministically.

A sweep file (JSON, or YAML when its name ends in .yaml/.yml):

    {"name": "cats",                                   optional: the sweep's id (--name overrides it)
     "base": {"epochs": 300, "neurons": [20, 7, 5, 1], ...},   parameters every trial shares
     "parameters": {                                   per parameter, what to try:
         "optimizer": ["gd", "adam"],                  a list: a grid axis (or, in a random search, a uniform choice)
         "learning_rate": {"low": 1e-4, "high": 0.1, "scale": "log"}},   a range: drawn in a random search
     "trials": 24,                                     a random search of N trials (--trials overrides it)
     "search_seed": 0,                                 the random search's seed (default 0)
     "seeds": [1, 2, 3],                               each configuration repeated with each training seed
     "halving": {"rungs": [25, 50], "keep": 0.5}}      optional: successive halving stops the worst (halving.py)

Without `trials` it is a grid: the product of the lists, in the order given. Every trial is then validated with the
code that validates a run (`TrainingConfig.from_parameters`), so a bad sweep is refused before anything starts.
"""

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lnn_core.errors import LnnInputError, shown
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.parameters import (
    CHOICE,
    COUNTS,
    INTEGER,
    MAX_SWEEP_NAME,
    MAX_TRIALS,
    NAMES,
    NUMBER,
    PARAMETERS,
    RUN_ID_PATTERN,
    TRIAL_SUFFIX,
)
from lnn_core.sweep.halving import parse_halving

NOT_VARIED = ("layers", "sweep")  # layers follows neurons; sweep is each trial's own sweep, set when generated
SCALES = ("linear", "log")
KEYS = ("name", "base", "parameters", "trials", "search_seed", "seeds", "halving")
CHECK_DATA = "runs/check/data.npz"  # the data key a trial is validated with (each trial's own is set at launch)


@dataclass(frozen=True)
class Range:
    """A parameter's range in a random search: drawn uniformly in [low, high], or in log space."""

    low: float
    high: float
    scale: str = "linear"

    def draw(self, random: np.random.RandomState, integer: bool) -> float | int:
        if self.scale == "log":
            value = math.exp(random.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = random.uniform(self.low, self.high)
        return min(max(round(value), int(self.low)), int(self.high)) if integer else float(value)  # integer ends


@dataclass(frozen=True)
class Trial:
    index: int  # from 1
    run_id: str
    parameters: dict[str, Any]  # the run's parameters.json (without data)
    varied: dict[str, Any]  # the values this trial sets of the parameters that vary


@dataclass(frozen=True)
class SweepSpec:
    name: str | None
    base: dict[str, Any]
    values: dict[str, list | Range]  # per varied parameter, in the order given
    trials: int | None  # None: a grid
    search_seed: int
    seeds: tuple[int, ...]
    halving: dict[str, Any] | None = None  # successive halving's rungs and keep (halving.py); None: off

    @property
    def varied_names(self) -> list[str]:
        return [*self.values, *(["seed"] if self.seeds else [])]

    def to_json(self) -> dict[str, Any]:
        """The sweep file's form of this spec (what sweep.json records)."""
        parameters = {
            name: (dict(low=v.low, high=v.high, scale=v.scale) if isinstance(v, Range) else v)
            for name, v in self.values.items()
        }
        spec = {"name": self.name, "base": self.base, "parameters": parameters, "search_seed": self.search_seed}
        if self.trials is not None:
            spec["trials"] = self.trials
        if self.seeds:
            spec["seeds"] = list(self.seeds)
        if self.halving:
            spec["halving"] = self.halving
        return spec

    def generate(self, sweep_id: str, *, defaults: dict[str, Any] | None = None) -> list[Trial]:
        """The trials, the same for the same spec and id; each validated as a run's parameters are."""
        if self.trials is None:
            combinations = [dict(zip(self.values, combo)) for combo in itertools.product(*self.values.values())]
        else:
            random = np.random.RandomState(self.search_seed)
            combinations = [
                {name: self._draw(name, values, random) for name, values in self.values.items()}
                for _ in range(self.trials)
            ]
        if self.seeds:
            combinations = [{**combo, "seed": seed} for combo in combinations for seed in self.seeds]
        if len(combinations) > MAX_TRIALS:
            raise LnnInputError(
                f"the sweep has {len(combinations)} trials, more than {MAX_TRIALS}; use fewer values "
                "per parameter, fewer seeds, or a random search (trials N)"
            )
        trials = []
        for index, varied in enumerate(combinations, start=1):
            parameters = {**self.base, **varied, "sweep": sweep_id}  # its end kicks the sweep's controller
            if "neurons" in varied or "activations" in varied:
                parameters.pop("layers", None)
            try:
                TrainingConfig.from_parameters({**parameters, "data": CHECK_DATA}, defaults=defaults)
            except LnnInputError as error:
                described = ", ".join(f"{name}={shown(value)}" for name, value in varied.items())
                raise LnnInputError(f"sweep trial {index} ({described}) is not a valid run: {error}") from None
            trials.append(Trial(index, trial_run_id(sweep_id, index), parameters, varied))
        return trials

    @staticmethod
    def _draw(name: str, values: list | Range, random: np.random.RandomState) -> Any:
        if isinstance(values, Range):
            return values.draw(random, PARAMETERS[name].kind == INTEGER)
        return values[random.randint(len(values))]


def trial_run_id(sweep_id: str, index: int) -> str:
    return sweep_id + TRIAL_SUFFIX.format(index=index)


def check_sweep_name(name: Any) -> str:
    if not isinstance(name, str) or len(name) > MAX_SWEEP_NAME or not RUN_ID_PATTERN.fullmatch(name):
        raise LnnInputError(
            f"sweep name {shown(name)} is invalid; use 1-{MAX_SWEEP_NAME} letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return name


def read_sweep_file(path: str | Path) -> dict[str, Any]:
    """A sweep file's content: JSON, or YAML for a .yaml/.yml name."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LnnInputError(f"sweep file {path} does not exist; give a sweep file (JSON or YAML)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LnnInputError(f"sweep file {path} cannot be read ({error}); check the path and its permissions") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml  # the client only; PyYAML comes with the dev tools

        try:
            content = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise LnnInputError(
                f"sweep file {path} is not valid YAML ({' '.join(str(error).split())}); fix it"
            ) from None
    else:
        try:
            content = json.loads(text)
        except json.JSONDecodeError as error:
            raise LnnInputError(
                f"sweep file {path} is not valid JSON ({error}); fix it (or name it .yaml for YAML)"
            ) from None
    if not isinstance(content, dict):
        raise LnnInputError(
            f"sweep file {path} must hold an object with base, parameters and optionally trials, "
            "search_seed, seeds, name"
        )
    return content


def parse_spec(content: dict[str, Any], *, source: str, trials: int | None = None) -> SweepSpec:
    """A sweep from a sweep file's content (`trials` over its trials); every problem is one `LnnInputError` naming
    `source`, the key, and the fix."""
    unknown = sorted(set(content) - set(KEYS))
    if unknown:
        raise LnnInputError(f"{source}: unknown key {unknown[0]!r}; a sweep file has {', '.join(KEYS)}")
    name = content.get("name")
    if name is not None:
        check_sweep_name(name)
    file_base = content.get("base", {})
    if not isinstance(file_base, dict):
        raise LnnInputError(f'{source}: base must be an object of parameters, e.g. {{"epochs": 100}}')
    raw = content.get("parameters", {})
    if not isinstance(raw, dict):
        raise LnnInputError(
            f"{source}: parameters must be an object: per parameter a list or a {{low, high, scale}} range"
        )
    values = {name: _values(name, value, source) for name, value in raw.items()}
    trials = content.get("trials") if trials is None else trials
    if trials is not None and (
        isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS
    ):
        raise LnnInputError(f"{source}: trials must be an integer from 1 to {MAX_TRIALS}; got {shown(trials)}")
    ranged = next((name for name, value in values.items() if isinstance(value, Range)), None)
    if ranged and trials is None:
        raise LnnInputError(
            f"{source}: parameters.{ranged} is a range, which a random search draws from; give trials N "
            "(or --trials N), or a list of values for a grid"
        )
    search_seed = content.get("search_seed", 0)
    if isinstance(search_seed, bool) or not isinstance(search_seed, int) or not 0 <= search_seed < 2**32:
        raise LnnInputError(f"{source}: search_seed must be an integer from 0 to {2**32 - 1}; got {shown(search_seed)}")
    seeds = content.get("seeds", [])
    if not isinstance(seeds, list) or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise LnnInputError(
            f"{source}: seeds must be a list of integers (each configuration runs once per seed); got {shown(seeds)}"
        )
    if seeds and "seed" in values:
        raise LnnInputError(f"{source}: seed is varied twice, in parameters and in seeds; keep one")
    for seed in seeds:
        PARAMETERS["seed"].check(seed)
    if not values and not seeds:
        raise LnnInputError(f"{source}: nothing varies; give parameters (per parameter a list or a range) or seeds")
    if trials is not None and not values:
        raise LnnInputError(
            f"{source}: trials {trials} draws from parameters, but none are given; add parameters or leave out trials"
        )
    halving = content.get("halving")
    if halving is not None:
        varied = values.get("granularity")
        parse_halving(
            halving, source=source, base=file_base, granularities=tuple(varied) if isinstance(varied, list) else ()
        )
    return SweepSpec(name, file_base, values, trials, search_seed, tuple(seeds), halving)


def _values(name: str, value: Any, source: str) -> list | Range:
    """A parameter's list (each value checked when its trials are) or range (its ends checked here)."""
    parameter = PARAMETERS.get(name)
    if parameter is None or name in NOT_VARIED:
        raise LnnInputError(
            f"{source}: parameters.{name} is not a training parameter that can vary; use one of "
            + ", ".join(sorted(set(PARAMETERS) - set(NOT_VARIED)))
        )
    if isinstance(value, list):
        if not value:
            raise LnnInputError(f"{source}: parameters.{name} is an empty list; give at least one value")
        return value
    if isinstance(value, dict):
        if parameter.kind not in (INTEGER, NUMBER):
            raise LnnInputError(
                f"{source}: parameters.{name} is {parameter.accepts}, which has no range; give a list of values"
            )
        if set(value) - {"low", "high", "scale"} or not {"low", "high"} <= set(value):
            raise LnnInputError(
                f'{source}: parameters.{name} must be a range {{"low": L, "high": H, "scale": '
                f'"linear"|"log"}}; got keys {", ".join(sorted(value))}'
            )
        scale = value.get("scale", "linear")
        if scale not in SCALES:
            raise LnnInputError(f"{source}: parameters.{name}.scale must be linear or log; got {shown(scale)}")
        for end in ("low", "high"):
            try:
                parameter.check(value[end])
            except LnnInputError as error:
                raise LnnInputError(f"{source}: parameters.{name}.{end}: {error}") from None
        low, high = float(value["low"]), float(value["high"])
        if low > high:
            raise LnnInputError(f"{source}: parameters.{name} has low {low:g} above high {high:g}; swap them")
        if scale == "log" and low <= 0:
            raise LnnInputError(
                f"{source}: parameters.{name} has a log scale but low {low:g}; a log range needs low > 0"
            )
        return Range(low, high, scale)
    kinds = "a list of values" + ("" if parameter.kind in (CHOICE, COUNTS, NAMES) else " or a {low, high, scale} range")
    raise LnnInputError(f"{source}: parameters.{name} must be {kinds}; got {shown(value)}")


def parse_vary(texts: list[str]) -> dict[str, Any]:
    """`--vary` flags as a sweep file's parameters: NAME=a,b,c (a list) or NAME=LOW:HIGH[:log] (a range).
    Numbers are read as JSON numbers, everything else as text; a per-layer value is a list separated by '/'."""
    parameters: dict[str, Any] = {}
    for text in texts:
        name, sep, values = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not values:
            raise LnnInputError(
                f"--vary {text!r} must be NAME=a,b,c or NAME=LOW:HIGH[:log], e.g. learning_rate=1e-4:0.1:log"
            )
        if ":" in values:
            low, high, *scale = values.split(":")
            if len(scale) > 1:
                raise LnnInputError(f"--vary {text!r}: a range is LOW:HIGH or LOW:HIGH:log")
            parameters[name] = {"low": _scalar(low), "high": _scalar(high), "scale": scale[0] if scale else "linear"}
        else:
            parameters[name] = [_layered(item) if "/" in item else _scalar(item) for item in values.split(",")]
    return parameters


def _layered(text: str) -> list:
    return [_scalar(item) for item in text.split("/")]


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()
