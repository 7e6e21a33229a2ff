"""A run's training configuration: the original LNN `parameters.json` format plus LNN's own keys.

LNN format: {"epochs": 2500, "layers": 4, "learning_rate": 0.0075,
             "neurons": {"layer1": 20, ...}, "activations": {"layer1": "relu", ...}}
LNN 0.0's and 1.0's parameters.json are accepted verbatim. The keys, their ranges and defaults: parameters.py;
"data" is the S3 key of the run's .npz, or of the folder (ending in /) of its data in `workers` parts. `neurons`
and `activations` may also be given as lists, layer 1 first.
"""

from dataclasses import dataclass
from typing import Any

from lnn_core.errors import LnnInputError
from lnn_core.ml.network import HIDDEN_ACTIVATIONS, REGRESSION_OUTPUTS
from lnn_core.ml.parameters import (
    COUNTS,
    KNOWN_KEYS,
    NAMES,
    OUTPUTS,
    PARAMETERS,
    RUN_ID_PATTERN,
    SHARD_REDUCE_MAX_WORKERS,
    STAYING_WORKERS,
    check_integer,
)

# None is a value of these (a drawn seed, the whole set as one batch, ...), so a null overrides a default
NULLABLE_KEYS = tuple(parameter.name for parameter in PARAMETERS.values() if parameter.default is None)


@dataclass(frozen=True)
class TrainingConfig:
    """What a run trains. `neurons[i]`/`activations[i]` describe layer i+1; the input size comes from the data."""

    epochs: int
    learning_rate: float
    neurons: tuple[int, ...]
    activations: tuple[str, ...]
    data: str
    granularity: str = PARAMETERS["granularity"].default
    init: str = PARAMETERS["init"].default
    dtype: str = PARAMETERS["dtype"].default  # float64 or float32: the data, the training state and the model
    seed: int | None = None
    batch_size: int | None = None  # None: the whole training set, one batch per epoch
    shuffle_seed: int | None = None  # None: the seed
    optimizer: str = PARAMETERS["optimizer"].default
    beta: float = PARAMETERS["beta"].default
    beta1: float = PARAMETERS["beta1"].default
    beta2: float = PARAMETERS["beta2"].default
    epsilon: float = PARAMETERS["epsilon"].default
    l2: float = PARAMETERS["l2"].default
    threshold: float | None = None  # stop after the first epoch whose cost is below it
    eval_every: int = PARAMETERS["eval_every"].default  # every N epochs, the epoch item records the test set's cost
    validation_split: float = PARAMETERS["validation_split"].default  # the fraction of the training data held out
    validation_seed: int = PARAMETERS["validation_seed"].default
    weight: float | None = None  # LNN 0.0: every initial weight (and `bias` every bias) instead of a random init
    bias: float | None = None
    workers: int = PARAMETERS["workers"].default  # K > 1: each update is a round of K shard workers and one reduce
    reduce: str = PARAMETERS["reduce"].default  # where a round of K > 1 workers is reduced (`reduces_in_shard`)
    sweep: str | None = None  # the sweep this run is a trial of; read by no step of training

    @property
    def layers(self) -> int:
        return len(self.neurons)

    @property
    def regression(self) -> bool:
        return self.activations[-1] in REGRESSION_OUTPUTS

    def optimizer_settings(self) -> dict[str, Any]:
        """The keyword arguments of `optimizers.update` besides the learning rate."""
        return {
            "optimizer": self.optimizer,
            "beta": self.beta,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "epsilon": self.epsilon,
        }

    def replay_shuffle_seed(self) -> int:
        return self.shuffle_seed if self.shuffle_seed is not None else (self.seed or 0)

    def to_parameters(self) -> dict[str, Any]:
        """This configuration in the LNN parameters.json format (the inverse of `from_parameters`), in the table's
        order with the data key after the seed."""
        parameters: dict[str, Any] = {}
        for name, parameter in PARAMETERS.items():
            value = getattr(self, name)
            parameters[name] = layer_map(value) if parameter.kind in (COUNTS, NAMES) else value
            if name == "seed":
                parameters["data"] = self.data
        return parameters

    @classmethod
    def from_parameters(cls, parameters: Any, *, defaults: dict[str, Any] | None = None) -> "TrainingConfig":
        """Validate LNN parameters (over optional defaults); raise `LnnInputError` naming the first problem."""
        if not isinstance(parameters, dict):
            raise LnnInputError("parameters must be a JSON object in the LNN parameters.json format")
        unknown = sorted(set(parameters) - KNOWN_KEYS)
        if unknown:
            raise LnnInputError(
                f"unknown parameter {unknown[0]!r}; known parameters are {', '.join(sorted(KNOWN_KEYS))}"
            )
        merged = {**(defaults or {}), **{k: v for k, v in parameters.items() if v is not None or k in NULLABLE_KEYS}}
        neurons = tuple(_layer_list(merged.get("neurons"), "neurons"))
        activations = tuple(_layer_list(merged.get("activations"), "activations"))
        declared_layers = PARAMETERS["layers"].check(parameters.get("layers", len(neurons)))
        if not (len(neurons) == len(activations) == declared_layers):
            raise LnnInputError(
                f"layers is {declared_layers} but {len(neurons)} neurons and {len(activations)} activations are given; "
                "give one of each per layer"
            )
        counts = PARAMETERS["neurons"]
        for index, count in enumerate(neurons, start=1):
            check_integer(f"neurons.layer{index}", count, counts.low, counts.high)
        for index, name in enumerate(activations, start=1):
            allowed = OUTPUTS if index == len(activations) else HIDDEN_ACTIVATIONS
            if name not in allowed:
                role = "the output" if index == len(activations) else "a hidden"
                raise LnnInputError(
                    f"activations.layer{index} {name!r} is unknown for {role} layer; use one of {', '.join(allowed)}"
                )
        if activations[-1] == "sigmoid" and neurons[-1] != 1:
            raise LnnInputError(f"a sigmoid output needs 1 neuron, not {neurons[-1]}; use softmax for several classes")
        if activations[-1] == "softmax" and neurons[-1] < 2:
            raise LnnInputError("a softmax output needs at least 2 neurons (one per class); use sigmoid for 2 classes")
        # Every other parameter: its value (or its default; a required one has none) checked by its table row.
        values = {}
        for name, parameter in PARAMETERS.items():
            if parameter.kind in (COUNTS, NAMES) or name == "layers":
                continue
            value = merged.get(name, None if parameter.required else parameter.default)
            unset = value is None and parameter.default is None and not parameter.required
            values[name] = None if unset else parameter.check(value)
        if values["workers"] > 1 and values["granularity"] == "layer":
            raise LnnInputError(
                f"workers {values['workers']} needs granularity epoch or auto: a round of shard workers computes "
                "whole forward and backward passes; give one of them, or workers 1 for granularity layer"
            )
        if values["reduce"] == STAYING_WORKERS and values["workers"] == 1:
            raise LnnInputError(
                "reduce workers keeps a round's K shard workers for the next rounds, and workers is 1: give workers "
                "2 or more, or leave reduce out"
            )
        if values["reduce"] == "shard" and values["workers"] > SHARD_REDUCE_MAX_WORKERS:
            raise LnnInputError(
                f"reduce shard takes at most {SHARD_REDUCE_MAX_WORKERS} workers (the shard reads every shard's sums "
                f"in one wave of requests), not {values['workers']}; use reduce auto or slices, or fewer workers"
            )
        if (values["weight"] is None) != (values["bias"] is None):
            raise LnnInputError("weight and bias (LNN 0.0's initial values) come together; give both or neither")
        data = merged.get("data")
        if not isinstance(data, str) or not data.startswith("runs/") or not data.endswith((".npz", "/")):
            raise LnnInputError(
                f"data must be the S3 key of an .npz file under runs/ (or of a folder of parts, "
                f"ending in /); got {data!r}"
            )
        check_key_segments(data.removesuffix("/"), name="data")
        if data.endswith("/") and values["workers"] < 2:
            raise LnnInputError(
                f"data in parts ({data}) needs workers 2 or more, one per part; give one worker a single .npz"
            )
        return cls(neurons=neurons, activations=activations, data=data, **values)


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
        raise LnnInputError(
            f"{name} {key!r} has an {'empty' if not bad else repr(bad)} path segment; "
            "use a plain key such as runs/<name>/data.npz"
        )
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
    raise LnnInputError(f'{name} is required: a list or a {{"layer1": ...}} map with one entry per layer')
