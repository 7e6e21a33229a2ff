"""The training parameters, declared once: name, type, range or choices, default, help, and the original LNN's spelling.

This table drives the configuration's validation (config.py), the `lnn local` / `lnn start` flags and their help
(lnn_cli/parser_options.py), the CDK context defaults (lnn_stack/settings/training.py), the effective configuration
the CLI prints, and docs/parameters.md (`python -m lnn_cli.parameters_doc`). Adding a parameter: a row here, and the
code that uses its value (a `TrainingConfig` field, the step that reads it).
"""

import math
import re
from dataclasses import dataclass
from typing import Any

from lnn_core.errors import LnnInputError, shown
from lnn_core.ml.network import (
    DTYPES,
    HIDDEN_ACTIVATIONS,
    INITIALIZERS,
    OUTPUT_ACTIVATIONS,
    REGRESSION_OUTPUTS,
)
from lnn_core.ml.optimizers import DEFAULT_BETA, DEFAULT_BETA1, DEFAULT_BETA2, DEFAULT_EPSILON, OPTIMIZERS

GRANULARITIES = ("layer", "epoch", "auto")
STAYING_WORKERS = "workers"  # parameter `reduce`: the shard workers make the slices and stay (`protocol.staying`)
REDUCES = ("auto", "shard", "slices", STAYING_WORKERS)  # see `round_steps.reduces_in_shard`
# auto reduces a round in the shard that completes it while the K shards' sums total at most this: on AWS (75 MB/s,
# docs/performance.md) 8 MiB take about 0.11 s to GET, about what the second hop to K slices costs
SHARD_REDUCE_MIB = 8
# ... and at most this many workers: its 4 K reads (K state slices in two objects, K shards' sums in two) go out in one
# wave of a delivery's concurrent requests (64), so that a round's sequential round trips do not grow with K
SHARD_REDUCE_MAX_WORKERS = 16
MAX_EPOCHS = 1_000_000
MAX_LAYERS = 64
MAX_NEURONS = 100_000
MAX_BATCH_SIZE = 10_000_000
MAX_SEED = 2**32 - 1 - MAX_EPOCHS  # a shuffle seeds RandomState(shuffle_seed + epoch), which takes at most 2**32 - 1
MAX_WORKERS = 256
OUTPUTS = OUTPUT_ACTIVATIONS + REGRESSION_OUTPUTS
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # always fullmatch: `$` would accept a trailing newline
# A sweep's trials are runs named <sweep>-t001, <sweep>-t002, ...: a sweep's name leaves room for the suffix.
MAX_TRIALS = 1000
TRIAL_SUFFIX = "-t{index:03d}"
MAX_SWEEP_NAME = 64 - len(TRIAL_SUFFIX.format(index=MAX_TRIALS))

# The kinds of value a parameter holds.
INTEGER, NUMBER, CHOICE, COUNTS, NAMES, SWEEP = "integer", "number", "choice", "counts", "names", "sweep"


@dataclass(frozen=True)
class TrainingParameter:
    """One key of a run's parameters.json."""

    name: str
    kind: str
    help: str
    example: str  # a valid value, for the fix a message suggests
    default: Any = None  # None: unset, and `unset` says what that means
    unset: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    required: bool = False  # the engine has no default: the run or the stack's defaults give it
    stack_default: bool = False  # always in the stack's LNN_TRAINING_DEFAULTS (the others only when set in context)
    flag: bool = True  # an `lnn local` / `lnn start` flag
    lnn: tuple[str, str] = ()  # how the original LNN spelled it, and in which versions; empty for LNN's own keys
    optimizer: str | None = None  # read by this optimizer only

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def accepts(self) -> str:
        """What the parameter accepts, as a phrase: 'an integer from 1 to 1000000'."""
        if self.kind == INTEGER:
            return f"an integer from {self.low} to {self.high}"
        if self.kind == NUMBER:
            return f"a number in {self.interval}"
        if self.kind == CHOICE:
            return "one of " + ", ".join(self.choices)
        if self.kind == COUNTS:
            return "positive integers separated by commas, one per layer"
        if self.kind == SWEEP:
            return (
                f"a sweep's name: 1-{MAX_SWEEP_NAME} letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return "activation names separated by commas, one per layer"

    @property
    def interval(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    @property
    def default_text(self) -> str:
        if self.default is None:
            return self.unset or "none"
        if isinstance(self.default, tuple):
            return ",".join(map(str, self.default))
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def check(self, value: Any) -> Any:
        """`value` if it is valid (a number as a float), else `LnnInputError` naming the parameter and its range."""
        if self.kind == INTEGER:
            return check_integer(self.name, value, self.low, self.high)
        if self.kind == NUMBER:
            return check_number(self.name, value, self.low, self.high, low_open=self.low_open, high_open=self.high_open)
        if self.kind == CHOICE:
            if value not in self.choices:
                raise LnnInputError(f"{self.name} must be {self.accepts}; got {shown(value)}")
            return value
        if self.kind == SWEEP:
            if not isinstance(value, str) or len(value) > MAX_SWEEP_NAME or not RUN_ID_PATTERN.fullmatch(value):
                raise LnnInputError(f"{self.name} must be {self.accepts}; got {shown(value)}")
            return value
        raise TypeError(f"{self.name}: per-layer values are checked layer by layer (config.py)")


def check_integer(label: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LnnInputError(f"{label} must be an integer from {low} to {high}; got {shown(value)}")
    return value


def check_number(
    label: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """A finite number in [low, high] (a parenthesis where open); a float."""
    fits = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (low < value if low_open else low <= value)
        and (value < high if high_open else value <= high)
    )
    if not fits:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise LnnInputError(f"{label} must be a number in {interval}; got {shown(value)}")
    return float(value)


def _integer(name: str, low: int, high: int, **fields) -> TrainingParameter:
    return TrainingParameter(name, INTEGER, low=low, high=high, **fields)


def _number(name: str, low: float, high: float, **fields) -> TrainingParameter:
    return TrainingParameter(name, NUMBER, low=low, high=high, **fields)


def _choice(name: str, choices: tuple[str, ...], **fields) -> TrainingParameter:
    return TrainingParameter(name, CHOICE, choices=choices, **fields)


# In the order of `TrainingConfig.to_parameters`, the docs and `--help`.
TABLE: tuple[TrainingParameter, ...] = (
    _integer(
        "epochs",
        1,
        MAX_EPOCHS,
        default=100,
        required=True,
        stack_default=True,
        example="100",
        help="passes over the training set",
        lnn=('"epochs": 2500', "0.0 to 1.0"),
    ),
    _integer(
        "layers",
        1,
        MAX_LAYERS,
        flag=False,
        example="4",
        unset="the number of neurons given",
        help="the number of layers; optional, it must agree with neurons and activations",
        lnn=('"layers": 4', "0.0 to 1.0"),
    ),
    _number(
        "learning_rate",
        0,
        10,
        low_open=True,
        default=0.0075,
        required=True,
        stack_default=True,
        example="0.0075",
        help="the step size of every update",
        lnn=('"learning_rate": 0.0075', "0.0 to 1.0"),
    ),
    TrainingParameter(
        "neurons",
        COUNTS,
        default=(20, 7, 5, 1),
        low=1,
        high=MAX_NEURONS,
        required=True,
        stack_default=True,
        example="20,7,5,1",
        help="neurons per layer, the output layer last",
        lnn=('"neurons": {"layer1": 20, ...}', "0.0 to 1.0"),
    ),
    TrainingParameter(
        "activations",
        NAMES,
        default=("relu", "relu", "relu", "sigmoid"),
        choices=HIDDEN_ACTIVATIONS,
        required=True,
        stack_default=True,
        example="relu,relu,relu,sigmoid",
        help="the activation of each layer: " + ", ".join(HIDDEN_ACTIVATIONS) + " for hidden layers; "
        "sigmoid (1 neuron), softmax or linear (a regression) for the output",
        lnn=('"activations": {"layer1": "relu", ...}', "0.0 to 1.0"),
    ),
    _choice(
        "granularity",
        GRANULARITIES,
        default="layer",
        stack_default=True,
        example="layer",
        help="what one trainer invocation computes: one layer's pass, one epoch, or auto (epochs that fit)",
    ),
    _choice(
        "init",
        INITIALIZERS,
        default="lecun",
        stack_default=True,
        example="he",
        help="the random initialization of the weights",
    ),
    _choice(
        "dtype",
        DTYPES,
        default="float64",
        example="float32",
        help="the floating-point type of the data, the weights and every computation, stored and moved as such; "
        "float32 halves their bytes (the data are rounded to it once, when loaded)",
    ),
    _integer(
        "seed",
        0,
        MAX_SEED,
        stack_default=True,
        example="42",
        unset="a random seed drawn per run",
        help="the seed of the initialization (and of the shuffle, unless shuffle_seed is given)",
    ),
    _integer(
        "batch_size",
        1,
        MAX_BATCH_SIZE,
        example="64",
        unset="the whole training set",
        help="examples per mini-batch",
        lnn=('"batch_size": 64', "0.2.4, 1.0"),
    ),
    _integer(
        "shuffle_seed",
        0,
        MAX_SEED,
        example="7",
        unset="the seed",
        help="the seed of the mini-batch shuffle, RandomState(shuffle_seed + epoch)",
    ),
    _choice("optimizer", OPTIMIZERS, default="gd", example="adam", help="the update rule"),
    _number(
        "beta", 0, 1, high_open=True, default=DEFAULT_BETA, optimizer="momentum", example="0.9", help="momentum's beta"
    ),
    _number("beta1", 0, 1, high_open=True, default=DEFAULT_BETA1, optimizer="adam", example="0.9", help="adam's beta1"),
    _number(
        "beta2", 0, 1, high_open=True, default=DEFAULT_BETA2, optimizer="adam", example="0.999", help="adam's beta2"
    ),
    _number(
        "epsilon", 0, 1, low_open=True, default=DEFAULT_EPSILON, optimizer="adam", example="1e-8", help="adam's epsilon"
    ),
    _number("l2", 0, 1e6, default=0.0, example="0.7", help="the L2 regularization lambda"),
    _number(
        "threshold",
        0,
        1e100,
        low_open=True,
        example="0.0019",
        unset="no early stop",
        help="stop after the first epoch whose cost is below it",
        lnn=('"threshold": 0.0019', "1.0"),
    ),
    _integer(
        "eval_every",
        0,
        MAX_EPOCHS,
        default=0,
        example="10",
        help="every N epochs, record the test set's cost and metric; 0 never",
    ),
    _number(
        "validation_split",
        0,
        1,
        high_open=True,
        default=0.0,
        example="0.2",
        help="the fraction of the training data held out for validation (by a permutation seeded with "
        "validation_seed, so every run of a sweep holds out the same examples), evaluated every eval_every epochs "
        "and at the end; 0 none",
    ),
    _integer(
        "validation_seed",
        0,
        MAX_SEED,
        default=0,
        example="0",
        help="the seed of the validation split's permutation (not the training seed: trials that differ in "
        "their seed still hold out the same examples)",
    ),
    _number(
        "weight",
        -1e6,
        1e6,
        flag=False,
        example="0",
        unset="a random initialization",
        help="every initial weight (with bias)",
        lnn=('"weight": 0', "0.0"),
    ),
    _number(
        "bias",
        -1e6,
        1e6,
        flag=False,
        example="0",
        unset="a random initialization",
        help="every initial bias (with weight)",
        lnn=('"bias": 0', "0.0"),
    ),
    _integer(
        "workers",
        1,
        MAX_WORKERS,
        default=1,
        example="1",
        help="data-parallel shard workers per update; more than 1 needs granularity epoch or auto, and at "
        "most the trainer's reserved concurrency; lnn local and lnn start then upload the data in K parts, "
        "one per worker",
    ),
    _choice(
        "reduce",
        REDUCES,
        default="auto",
        example="slices",
        help="where a round of K > 1 workers adds up the shards' gradient sums and updates the parameters: "
        "slices (K slice functions, each moving about 2 G + G / K bytes, G the parameters' bytes), shard (the "
        f"shard that completes the round, moving K G: no second hop; K at most {SHARD_REDUCE_MAX_WORKERS}), or auto "
        f"(shard while K G is at most {SHARD_REDUCE_MIB} MiB and K at most {SHARD_REDUCE_MAX_WORKERS}), or workers "
        "(each shard worker updates its slice itself and stays for the next rounds, waiting for its peers: no "
        "invocation a round, but the K workers must run at once); every choice trains the same numbers",
    ),
    TrainingParameter(
        "sweep",
        SWEEP,
        flag=False,
        example="cats",
        unset="not a sweep's trial",
        help="the sweep this run is a trial of (set by `lnn sweep`; it changes nothing in training): its end asks "
        "the stack to start the sweep's next queued trial, or to send the sweep's message",
    ),
)
PARAMETERS = {parameter.name: parameter for parameter in TABLE}
# parameters.json's keys: the table's and the run's data (set by the launcher: runs/<id>/data.npz).
KNOWN_KEYS = frozenset(PARAMETERS) | {"data"}
