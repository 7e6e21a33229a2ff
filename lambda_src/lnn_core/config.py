"""A run's training configuration: the original LNN `parameters.json` format plus LNN's own keys.

LNN format: {"epochs": 2500, "layers": 4, "learning_rate": 0.0075,
             "neurons": {"layer1": 20, ...}, "activations": {"layer1": "relu", ...}}
Our keys: "init" (lecun | he), "seed", "granularity" (layer | epoch | auto), "data" (the S3 key of the .npz).
`neurons` and `activations` may also be given as lists, layer 1 first.
"""

import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import LnnInputError
from .network import HIDDEN_ACTIVATIONS, INITIALIZERS, OUTPUT_ACTIVATIONS

GRANULARITIES = ("layer", "epoch", "auto")
MAX_EPOCHS = 1_000_000
MAX_LAYERS = 64
MAX_NEURONS = 100_000
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # always fullmatch: `$` would accept a trailing newline
KNOWN_KEYS = {"epochs", "layers", "learning_rate", "neurons", "activations", "granularity", "init", "seed", "data"}


@dataclass(frozen=True)
class TrainingConfig:
    """What a run trains. `neurons[i]`/`activations[i]` describe layer i+1; the input size comes from the data."""

    epochs: int
    learning_rate: float
    neurons: tuple[int, ...]
    activations: tuple[str, ...]
    data: str
    granularity: str = "layer"
    init: str = "lecun"
    seed: int | None = None

    @property
    def layers(self) -> int:
        return len(self.neurons)

    def to_parameters(self) -> dict[str, Any]:
        """This configuration in the LNN parameters.json format (the inverse of `from_parameters`)."""
        return {
            "epochs": self.epochs,
            "layers": self.layers,
            "learning_rate": self.learning_rate,
            "neurons": layer_map(self.neurons),
            "activations": layer_map(self.activations),
            "granularity": self.granularity,
            "init": self.init,
            "seed": self.seed,
            "data": self.data,
        }

    @classmethod
    def from_parameters(cls, parameters: Any, *, defaults: dict[str, Any] | None = None) -> "TrainingConfig":
        """Validate LNN parameters (over optional defaults); raise `LnnInputError` naming the first problem."""
        if not isinstance(parameters, dict):
            raise LnnInputError("parameters must be a JSON object in the LNN parameters.json format")
        unknown = sorted(set(parameters) - KNOWN_KEYS)
        if unknown:
            raise LnnInputError(f"unknown parameter {unknown[0]!r}; known parameters are {', '.join(sorted(KNOWN_KEYS))}")
        merged = {**(defaults or {}), **{k: v for k, v in parameters.items() if v is not None or k == "seed"}}
        neurons = tuple(_layer_list(merged.get("neurons"), "neurons"))
        activations = tuple(_layer_list(merged.get("activations"), "activations"))
        declared_layers = parameters.get("layers", len(neurons))
        _check_int("layers", declared_layers, 1, MAX_LAYERS)
        if not (len(neurons) == len(activations) == declared_layers):
            raise LnnInputError(
                f"layers is {declared_layers} but {len(neurons)} neurons and {len(activations)} activations are given; "
                "give one of each per layer"
            )
        for index, count in enumerate(neurons, start=1):
            _check_int(f"neurons.layer{index}", count, 1, MAX_NEURONS)
        for index, name in enumerate(activations, start=1):
            allowed = OUTPUT_ACTIVATIONS if index == len(activations) else HIDDEN_ACTIVATIONS
            if name not in allowed:
                role = "the output" if index == len(activations) else "a hidden"
                raise LnnInputError(f"activations.layer{index} {name!r} is unknown for {role} layer; use one of {', '.join(allowed)}")
        if activations[-1] == "sigmoid" and neurons[-1] != 1:
            raise LnnInputError(f"a sigmoid output needs 1 neuron, not {neurons[-1]}; use softmax for several classes")
        if activations[-1] == "softmax" and neurons[-1] < 2:
            raise LnnInputError("a softmax output needs at least 2 neurons (one per class); use sigmoid for 2 classes")
        epochs = _check_int("epochs", merged.get("epochs"), 1, MAX_EPOCHS)
        learning_rate = merged.get("learning_rate")
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not (
            math.isfinite(learning_rate) and 0 < learning_rate <= 10
        ):
            raise LnnInputError(f"learning_rate must be a number in (0, 10]; got {learning_rate!r}")
        granularity = _check_choice("granularity", merged.get("granularity", "layer"), GRANULARITIES)
        init = _check_choice("init", merged.get("init", "lecun"), INITIALIZERS)
        seed = merged.get("seed")
        if seed is not None:
            _check_int("seed", seed, 0, 2**32 - 1)
        data = merged.get("data")
        if not isinstance(data, str) or not data.startswith("runs/") or not data.endswith(".npz"):
            raise LnnInputError(f"data must be the S3 key of an .npz file under runs/; got {data!r}")
        check_key_segments(data, name="data")
        return cls(
            epochs=epochs,
            learning_rate=float(learning_rate),
            neurons=neurons,
            activations=activations,
            data=data,
            granularity=granularity,
            init=init,
            seed=seed,
        )


def layer_map(values: tuple) -> dict[str, Any]:
    """(a, b) -> {"layer1": a, "layer2": b}: the LNN encoding of per-layer values."""
    return {f"layer{index}": value for index, value in enumerate(values, start=1)}


def check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise LnnInputError(
            f"run id {run_id!r} is invalid; use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return run_id


def check_key_segments(key: str, *, name: str) -> str:
    """Raise for an S3 key with an empty, '.' or '..' segment: tools that normalise paths would read another object."""
    bad = next((segment for segment in key.split("/") if segment in ("", ".", "..")), None)
    if bad is not None:
        raise LnnInputError(f"{name} {key!r} has an {'empty' if not bad else repr(bad)} path segment; "
                            "use a plain key such as runs/<name>/data.npz")
    return key


def _layer_list(value: Any, name: str) -> list:
    """Per-layer values from a list or an LNN {"layerN": ...} map, layer 1 first."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, dict):
        expected = [f"layer{index}" for index in range(1, len(value) + 1)]
        if sorted(value) != sorted(expected):
            raise LnnInputError(f"{name} keys must be layer1..layer{len(value)}; got {', '.join(sorted(value))}")
        return [value[key] for key in expected]
    raise LnnInputError(f"{name} is required: a list or a {{\"layer1\": ...}} map with one entry per layer")


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LnnInputError(f"{name} must be an integer from {low} to {high}; got {value!r}")
    return value


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise LnnInputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value
