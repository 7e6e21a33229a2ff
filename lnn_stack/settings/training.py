"""`TrainingDefaults`: the training parameters a run gets unless its parameters.json overrides them.

One context key per flag of lnn_core.ml.parameters' table, with that table's default, range and check: the rules the
launcher applies to every run. A key with `stack_default` is always in the launcher's LNN_TRAINING_DEFAULTS; the
others only when set, so that the engine's own default (the same table's) applies.
"""

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from lnn_core.errors import LnnInputError
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.parameters import (
    CHOICE,
    COUNTS,
    INTEGER,
    NAMES,
    NUMBER,
    TABLE,
    TrainingParameter,
)
from lnn_stack.settings.context import (
    ContextError,
    Parameter,
    choice,
    comma_list,
    integer,
    optional,
    word,
)


def _whole(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise TypeError(raw)
    return int(raw)


def _number(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise TypeError(raw)
    return float(raw)


def _checked(row: TrainingParameter, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`convert` the raw value (a string from -c, JSON from cdk.json), then check it against the table's row."""

    def parse(raw: Any) -> Any:
        try:
            return row.check(convert(raw))
        except LnnInputError:
            raise ValueError(raw) from None

    return parse


def _parser(row: TrainingParameter) -> Callable[[Any], Any]:
    parse = {
        INTEGER: lambda: _checked(row, _whole),
        NUMBER: lambda: _checked(row, _number),
        CHOICE: lambda: choice(row.choices),
        COUNTS: lambda: comma_list(integer(row.low, row.high)),
        NAMES: lambda: comma_list(word),
    }[row.kind]()
    # Unset by an empty string: a key without a stack default, or whose default is "none" (seed)
    return optional(parse) if not row.stack_default or row.default is None else parse


def _context_parameter(row: TrainingParameter) -> Parameter:
    default = row.default if row.stack_default else None
    reader = f" ({row.optimizer})" if row.optimizer else ""
    unset = f" (or empty for {row.unset})" if row.unset else ""
    return Parameter(row.name, default, _parser(row), row.accepts + reader + unset, row.example)


# Setting field -> context parameter, in the table's order: every parameter a flag sets.
TRAINING_PARAMETERS = {row.name: _context_parameter(row) for row in TABLE if row.flag}


class _TrainingDefaultsMethods:
    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "TrainingDefaults":
        defaults = cls(**{field: parameter.read(context) for field, parameter in TRAINING_PARAMETERS.items()})
        # The rules that relate keys (one activation per layer, valid output activation, ...) are the
        # engine's own: the launcher applies the same validation to every run.
        parameters = {**defaults.to_parameters(), "data": "runs/defaults/data.npz"}
        neurons, activations = TRAINING_PARAMETERS["neurons"], TRAINING_PARAMETERS["activations"]
        try:  # the network first, at the granularity that admits any workers
            TrainingConfig.from_parameters({**parameters, "granularity": "auto"})
        except LnnInputError as error:
            raise ContextError(
                f"Context parameters for the training defaults do not make a valid network: {error}. "
                f"Fix: cdk synth -c neurons={neurons.example} -c activations={activations.example}"
            ) from None
        try:
            TrainingConfig.from_parameters(parameters)
        except LnnInputError as error:  # then workers against the granularity, the one rule left
            raise ContextError(
                f"Context parameters for the training defaults do not agree: {error}. "
                f"Fix: cdk synth -c workers={defaults.workers} -c granularity=epoch"
            ) from None
        return defaults

    def to_parameters(self) -> dict[str, Any]:
        """These defaults in the LNN parameters.json format (the launcher's LNN_TRAINING_DEFAULTS)."""
        parameters: dict[str, Any] = {}
        for row in TABLE:
            value = getattr(self, row.name, None)
            if row.kind in (COUNTS, NAMES):
                if row.name == "neurons":  # LNN writes the layer count before the per-layer maps
                    parameters["layers"] = len(value)
                parameters[row.name] = {f"layer{index}": item for index, item in enumerate(value, start=1)}
            elif row.flag and (row.stack_default or value is not None):
                parameters[row.name] = value
        return parameters

    def to_json(self) -> str:
        return json.dumps(self.to_parameters(), separators=(",", ":"))


# The training parameters a run gets unless its parameters.json overrides them: one frozen field per context
# parameter, defaulting to an empty context's value (None: unset).
TrainingDefaults = dataclasses.make_dataclass(
    "TrainingDefaults",
    [(field, Any, dataclasses.field(default=parameter.default)) for field, parameter in TRAINING_PARAMETERS.items()],
    bases=(_TrainingDefaultsMethods,),
    frozen=True,
    namespace={"__module__": __name__},
)
