"""`TrainingDefaults`: the training parameters a run gets unless its parameters.json overrides them.

Each value is checked with the engine's own rules (`TrainingConfig`), the ones the launcher applies to every run.
"""

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lnn_core.config import GRANULARITIES, MAX_BATCH_SIZE, MAX_EPOCHS, MAX_SEED, TrainingConfig
from lnn_core.errors import LnnInputError
from lnn_core.network import INITIALIZERS
from lnn_core.optimizers import OPTIMIZERS

from .context import ContextError, Parameter, choice, comma_list, integer, optional, positive_number, word

EPOCHS = Parameter("epochs", 100, integer(1, MAX_EPOCHS), f"an integer from 1 to {MAX_EPOCHS}", "100")
LEARNING_RATE = Parameter("learning_rate", 0.0075, positive_number, "a number greater than 0", "0.0075")
NEURONS = Parameter("neurons", (20, 7, 5, 1), comma_list(integer(1, 1_000_000)),
                    "positive integers separated by commas, one per layer", "20,7,5,1")
ACTIVATIONS = Parameter("activations", ("relu", "relu", "relu", "sigmoid"), comma_list(word),
                        "activation names separated by commas, one per layer", "relu,relu,relu,sigmoid")
GRANULARITY = Parameter("granularity", "layer", choice(GRANULARITIES), "one of " + ", ".join(GRANULARITIES), "layer")
INIT = Parameter("init", "lecun", choice(INITIALIZERS), "one of " + ", ".join(INITIALIZERS), "he")
SEED = Parameter("seed", None, optional(integer(0, MAX_SEED)),
                 f"an integer from 0 to {MAX_SEED} (or empty for a random seed per run)", "42")


def _training_value(key: str, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`convert` the raw value, then check it with the engine's own rules (`TrainingConfig.from_parameters`)."""

    def parse(raw: Any) -> Any:
        if isinstance(raw, bool):
            raise TypeError(raw)
        value = convert(raw)
        try:
            # granularity auto admits every value of every key: a rule between keys is from_context's to check
            TrainingConfig.from_parameters({"epochs": 1, "learning_rate": 0.1, "neurons": [1], "activations": ["sigmoid"],
                                            "granularity": "auto", "data": "runs/defaults/data.npz", key: value})
        except LnnInputError:
            raise ValueError(raw) from None
        return value

    return parse


def _whole(raw: Any) -> int:
    if not isinstance(raw, (int, str)):
        raise TypeError(raw)
    return int(raw)


def _number(raw: Any) -> float:
    if not isinstance(raw, (int, float, str)):
        raise TypeError(raw)
    return float(raw)


BATCH_SIZE = Parameter("batch_size", None, optional(_training_value("batch_size", _whole)),
                       f"an integer from 1 to {MAX_BATCH_SIZE} (or empty for the whole training set)", "64")
SHUFFLE_SEED = Parameter("shuffle_seed", None, optional(_training_value("shuffle_seed", _whole)),
                         f"an integer from 0 to {MAX_SEED} (or empty to use the seed)", "7")
OPTIMIZER = Parameter("optimizer", None, optional(choice(OPTIMIZERS)), "one of " + ", ".join(OPTIMIZERS), "adam")
BETA = Parameter("beta", None, optional(_training_value("beta", _number)), "a number in [0, 1) (momentum)", "0.9")
BETA1 = Parameter("beta1", None, optional(_training_value("beta1", _number)), "a number in [0, 1) (adam)", "0.9")
BETA2 = Parameter("beta2", None, optional(_training_value("beta2", _number)), "a number in [0, 1) (adam)", "0.999")
EPSILON = Parameter("epsilon", None, optional(_training_value("epsilon", _number)), "a number in (0, 1] (adam)", "1e-8")
L2 = Parameter("l2", None, optional(_training_value("l2", _number)), "a number from 0 to 1000000 (L2 lambda)", "0.7")
THRESHOLD = Parameter("threshold", None, optional(_training_value("threshold", _number)),
                      "a number greater than 0 (or empty for no early stop)", "0.0019")
EVAL_EVERY = Parameter("eval_every", None, optional(_training_value("eval_every", _whole)),
                       f"an integer from 0 to {MAX_EPOCHS} (epochs; 0 never)", "10")
WORKERS = Parameter("workers", None, optional(_training_value("workers", _whole)),
                    "an integer from 1 to 256 (data-parallel shard workers per update; more than 1 needs granularity epoch or auto)", "1")

# Setting field -> context parameter, in field order.
TRAINING_PARAMETERS = {
    "epochs": EPOCHS,
    "learning_rate": LEARNING_RATE,
    "neurons": NEURONS,
    "activations": ACTIVATIONS,
    "granularity": GRANULARITY,
    "init": INIT,
    "seed": SEED,
    "batch_size": BATCH_SIZE,
    "shuffle_seed": SHUFFLE_SEED,
    "optimizer": OPTIMIZER,
    "beta": BETA,
    "beta1": BETA1,
    "beta2": BETA2,
    "epsilon": EPSILON,
    "l2": L2,
    "threshold": THRESHOLD,
    "eval_every": EVAL_EVERY,
    "workers": WORKERS,
}
# Training defaults left unset (None) are not in LNN_TRAINING_DEFAULTS: the engine's own default applies.
OPTIONAL_TRAINING_KEYS = ("batch_size", "shuffle_seed", "optimizer", "beta", "beta1", "beta2", "epsilon", "l2", "threshold",
                          "eval_every", "workers")


@dataclass(frozen=True)
class TrainingDefaults:
    """The training parameters a run gets unless its parameters.json overrides them."""

    epochs: int = EPOCHS.default
    learning_rate: float = LEARNING_RATE.default
    neurons: tuple[int, ...] = NEURONS.default
    activations: tuple[str, ...] = ACTIVATIONS.default
    granularity: str = GRANULARITY.default
    init: str = INIT.default
    seed: int | None = SEED.default
    batch_size: int | None = BATCH_SIZE.default
    shuffle_seed: int | None = SHUFFLE_SEED.default
    optimizer: str | None = OPTIMIZER.default
    beta: float | None = BETA.default
    beta1: float | None = BETA1.default
    beta2: float | None = BETA2.default
    epsilon: float | None = EPSILON.default
    l2: float | None = L2.default
    threshold: float | None = THRESHOLD.default
    eval_every: int | None = EVAL_EVERY.default
    workers: int | None = WORKERS.default

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "TrainingDefaults":
        defaults = cls(**{field: parameter.read(context) for field, parameter in TRAINING_PARAMETERS.items()})
        # The rules that relate keys (one activation per layer, valid output activation, ...) are the
        # engine's own: the launcher applies the same validation to every run.
        parameters = {**defaults.to_parameters(), "data": "runs/defaults/data.npz"}
        try:  # the network first, at the granularity that admits any workers
            TrainingConfig.from_parameters({**parameters, "granularity": "auto"})
        except LnnInputError as error:
            raise ContextError(
                f"Context parameters for the training defaults do not make a valid network: {error}. "
                f"Fix: cdk synth -c neurons={NEURONS.example} -c activations={ACTIVATIONS.example}"
            ) from None
        try:
            TrainingConfig.from_parameters(parameters)
        except LnnInputError as error:  # then workers against the granularity, the one rule left
            raise ContextError(f"Context parameters for the training defaults do not agree: {error}. "
                               f"Fix: cdk synth -c workers={defaults.workers} -c granularity=epoch") from None
        return defaults

    def to_parameters(self) -> dict[str, Any]:
        """These defaults in the LNN parameters.json format (the launcher's LNN_TRAINING_DEFAULTS)."""
        return {
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "layers": len(self.neurons),
            "neurons": {f"layer{index}": count for index, count in enumerate(self.neurons, start=1)},
            "activations": {f"layer{index}": name for index, name in enumerate(self.activations, start=1)},
            "granularity": self.granularity,
            "init": self.init,
            "seed": self.seed,
            **{key: getattr(self, key) for key in OPTIONAL_TRAINING_KEYS if getattr(self, key) is not None},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_parameters(), separators=(",", ":"))
