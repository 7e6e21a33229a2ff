"""A run's training configuration: the original LNN `parameters.json` format plus LNN's own keys.

LNN format: {"epochs": 2500, "layers": 4, "learning_rate": 0.0075,
             "neurons": {"layer1": 20, ...}, "activations": {"layer1": "relu", ...}}
LNN 0.0's "weight" and "bias" (the initial values of every weight and bias) and LNN 1.0's "batch_size" and
"threshold" are accepted verbatim.
Our keys: "init" (lecun | he), "seed", "granularity" (layer | epoch | auto), "data" (the S3 key of the .npz),
"shuffle_seed", "optimizer" (gd | momentum | adam) with "beta", "beta1", "beta2", "epsilon", "l2", "eval_every",
"workers" (data-parallel shard workers per update).
`neurons` and `activations` may also be given as lists, layer 1 first.
"""

import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import LnnInputError
from .network import HIDDEN_ACTIVATIONS, INITIALIZERS, OUTPUT_ACTIVATIONS, REGRESSION_OUTPUTS
from .optimizers import DEFAULT_BETA, DEFAULT_BETA1, DEFAULT_BETA2, DEFAULT_EPSILON, OPTIMIZERS

GRANULARITIES = ("layer", "epoch", "auto")
MAX_EPOCHS = 1_000_000
MAX_LAYERS = 64
MAX_NEURONS = 100_000
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # always fullmatch: `$` would accept a trailing newline
MAX_BATCH_SIZE = 10_000_000
MAX_SEED = 2**32 - 1 - MAX_EPOCHS  # a shuffle seeds RandomState(shuffle_seed + epoch), which takes at most 2**32 - 1
KNOWN_KEYS = {"epochs", "layers", "learning_rate", "neurons", "activations", "granularity", "init", "seed", "data",
              "batch_size", "shuffle_seed", "optimizer", "beta", "beta1", "beta2", "epsilon", "l2", "threshold",
              "eval_every", "weight", "bias", "workers"}
MAX_WORKERS = 256
OUTPUTS = OUTPUT_ACTIVATIONS + REGRESSION_OUTPUTS


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
    batch_size: int | None = None  # None: the whole training set, one batch per epoch
    shuffle_seed: int | None = None  # None: the seed
    optimizer: str = "gd"
    beta: float = DEFAULT_BETA
    beta1: float = DEFAULT_BETA1
    beta2: float = DEFAULT_BETA2
    epsilon: float = DEFAULT_EPSILON
    l2: float = 0.0
    threshold: float | None = None  # stop after the first epoch whose cost is below it
    eval_every: int = 0  # every N epochs, the epoch item records the test set's cost and metric
    weight: float | None = None  # LNN 0.0: every initial weight (and `bias` every bias) instead of a random init
    bias: float | None = None
    workers: int = 1  # K > 1: each update is a round of K shard workers and one reduce

    @property
    def layers(self) -> int:
        return len(self.neurons)

    @property
    def regression(self) -> bool:
        return self.activations[-1] in REGRESSION_OUTPUTS

    def optimizer_settings(self) -> dict[str, Any]:
        """The keyword arguments of `optimizers.update` besides the learning rate."""
        return {"optimizer": self.optimizer, "beta": self.beta, "beta1": self.beta1, "beta2": self.beta2,
                "epsilon": self.epsilon}

    def replay_shuffle_seed(self) -> int:
        return self.shuffle_seed if self.shuffle_seed is not None else (self.seed or 0)

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
            "batch_size": self.batch_size,
            "shuffle_seed": self.shuffle_seed,
            "optimizer": self.optimizer,
            "beta": self.beta,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "epsilon": self.epsilon,
            "l2": self.l2,
            "threshold": self.threshold,
            "eval_every": self.eval_every,
            "weight": self.weight,
            "bias": self.bias,
            "workers": self.workers,
        }

    @classmethod
    def from_parameters(cls, parameters: Any, *, defaults: dict[str, Any] | None = None) -> "TrainingConfig":
        """Validate LNN parameters (over optional defaults); raise `LnnInputError` naming the first problem."""
        if not isinstance(parameters, dict):
            raise LnnInputError("parameters must be a JSON object in the LNN parameters.json format")
        unknown = sorted(set(parameters) - KNOWN_KEYS)
        if unknown:
            raise LnnInputError(f"unknown parameter {unknown[0]!r}; known parameters are {', '.join(sorted(KNOWN_KEYS))}")
        nullable = ("seed", "shuffle_seed", "batch_size", "threshold", "weight", "bias")
        merged = {**(defaults or {}), **{k: v for k, v in parameters.items() if v is not None or k in nullable}}
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
            allowed = OUTPUTS if index == len(activations) else HIDDEN_ACTIVATIONS
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
        seed = _optional(merged, "seed", lambda name, value: _check_int(name, value, 0, MAX_SEED))
        shuffle_seed = _optional(merged, "shuffle_seed", lambda name, value: _check_int(name, value, 0, MAX_SEED))
        batch_size = _optional(merged, "batch_size", lambda name, value: _check_int(name, value, 1, MAX_BATCH_SIZE))
        optimizer = _check_choice("optimizer", merged.get("optimizer", "gd"), OPTIMIZERS)
        beta, beta1, beta2 = (_check_number(name, merged.get(name, default), 0.0, 1.0, high_open=True)
                              for name, default in (("beta", DEFAULT_BETA), ("beta1", DEFAULT_BETA1), ("beta2", DEFAULT_BETA2)))
        epsilon = _check_number("epsilon", merged.get("epsilon", DEFAULT_EPSILON), 0.0, 1.0, low_open=True)
        l2 = _check_number("l2", merged.get("l2", 0.0), 0.0, 1e6)
        threshold = _optional(merged, "threshold", lambda name, value: _check_number(name, value, 0.0, 1e100, low_open=True))
        eval_every = _check_int("eval_every", merged.get("eval_every", 0), 0, MAX_EPOCHS)
        weight = _optional(merged, "weight", lambda name, value: _check_number(name, value, -1e6, 1e6))
        bias = _optional(merged, "bias", lambda name, value: _check_number(name, value, -1e6, 1e6))
        workers = _check_int("workers", merged.get("workers", 1), 1, MAX_WORKERS)
        if workers > 1 and granularity == "layer":
            raise LnnInputError(f"workers {workers} needs granularity epoch or auto: a round of shard workers computes "
                                "whole forward and backward passes; use granularity layer with workers 1")
        if (weight is None) != (bias is None):
            raise LnnInputError("weight and bias (LNN 0.0's initial values) come together; give both or neither")
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
            batch_size=batch_size,
            shuffle_seed=shuffle_seed,
            optimizer=optimizer,
            beta=beta,
            beta1=beta1,
            beta2=beta2,
            epsilon=epsilon,
            l2=l2,
            threshold=threshold,
            eval_every=eval_every,
            weight=weight,
            bias=bias,
            workers=workers,
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
        raise LnnInputError(f"{name} must be an integer from {low} to {high}; got {shown(value)}")
    return value


def _check_number(name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> float:
    """A finite number in [low, high] (a parenthesis where open); a float."""
    fits = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (low < value if low_open else low <= value) and (value < high if high_open else value <= high))
    if not fits:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise LnnInputError(f"{name} must be a number in {interval}; got {shown(value)}")
    return float(value)


def _optional(merged: dict[str, Any], name: str, check) -> Any:
    value = merged.get(name)
    return None if value is None else check(name, value)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise LnnInputError(f"{name} must be one of {', '.join(choices)}; got {shown(value)}")
    return value


def shown(value: Any, limit: int = 80) -> str:
    """A value for an error message, cut short (parameters can hold anything, even an int too long to print)."""
    try:
        text = repr(value)
    except ValueError:
        return f"a {type(value).__name__} too long to show"
    return text if len(text) <= limit else text[: limit - 1] + "…"
