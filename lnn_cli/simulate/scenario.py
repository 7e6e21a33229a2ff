"""What a schedule trains and how stormy it is: tiny data and networks (a run of 2 to ~20 steps), drawn per seed,
and the reference results every succeeded run must equal bit for bit (`lnn_core.ml.training.train_reference_state`)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from lnn_core.ml import training

START = 1_800_000_000.0  # virtual epoch seconds at a schedule's start
RUN_ID = "sim-run"
WATCHDOG_EVERY = 60.0  # seconds between the watchdog's scheduled passes
QUIET_TICKS = 4  # watchdog ticks with nothing else in flight before a schedule ends (> the lease)


@dataclass(frozen=True)
class Rates:
    """Fault probabilities: per event sent (lose, duplicate, delay), per delivery start (throttle, freeze at one
    of its points), per effect (crash before, crash after, lost answer), per container (clock skew)."""

    lose: float = 0.0
    duplicate: float = 0.0
    distinct_id: float = 0.5  # of duplicates: a copy with its own request id
    delay: float = 0.0
    throttle: float = 0.0
    freeze: float = 0.0
    crash: float = 0.0
    lost_answer: float = 0.0
    skew: float = 0.0  # a container clock skewed beyond the lease
    concurrent_launch: float = 0.0
    stop: float = 0.0  # the operator's `lnn stop` during the run
    resume: float = 0.0  # the operator's `lnn resume` during the run
    resume_after_stop: float = 0.0  # of stops: an `lnn resume` after it, which continues the run if it stopped


CALM = Rates()
STORMY = Rates(
    lose=0.04,
    duplicate=0.15,
    delay=0.1,
    throttle=0.05,
    freeze=0.03,
    crash=0.03,
    lost_answer=0.03,
    skew=0.05,
    concurrent_launch=0.3,
    stop=0.08,
    resume=0.1,
    resume_after_stop=0.7,
)


@dataclass(frozen=True)
class Scenario:
    parameters: dict[str, Any]
    examples: int
    features: int
    data_seed: int
    rates: Rates = field(default=STORMY)

    @property
    def workers(self) -> int:
        return self.parameters.get("workers", 1)

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        return blobs(self.examples, self.features, self.data_seed)

    def data_npz(self) -> bytes:
        X, y = self.data()
        buffer = io.BytesIO()
        np.savez(buffer, X=X, y=y)
        return buffer.getvalue()

    def describe(self) -> str:
        p = self.parameters
        return (
            f"{p['granularity']} K={self.workers} epochs={p['epochs']} batch_size={p.get('batch_size')} "
            f"neurons={p['neurons']} m={self.examples} n={self.features}"
            + (f" threshold={p['threshold']:.4g}" if p.get("threshold") else "")
        )


def blobs(m: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two separable Gaussian blobs (as tests/conftest's): X (m, features), y (m,) of 0/1."""
    rng = np.random.RandomState(seed)
    y = np.arange(m) % 2
    X = rng.randn(m, features) * 0.5 + (y[:, None] * 2.0 - 1.0)
    return X, y.astype(np.float64)


def draw_scenario(rng, *, rates: Rates | None = None) -> Scenario:
    """A small run: granularity layer/epoch/auto, K workers in {1, 2, 3} (epoch/auto only), 1-3 epochs, a batch size
    giving 1-3 mini-batches, and sometimes a threshold that stops it after its first epoch."""
    examples, features = rng.randrange(20, 41), rng.randrange(2, 5)
    granularity = rng.choice(["layer", "epoch", "epoch", "auto"])
    workers = 1 if granularity == "layer" else rng.choice([1, 2, 2, 3])
    shapes = [([2], ["sigmoid"]), ([3, 1], ["tanh", "sigmoid"])]
    neurons, activations = shapes[rng.randrange(2)]
    epochs = rng.randrange(1, 3) if granularity == "layer" else rng.randrange(1, 4)
    batch_size = rng.choice([None, None, examples // 2 + 1, examples // 3 + 1])
    if neurons == [2] and activations == ["sigmoid"]:
        neurons, activations = [1], ["sigmoid"]
    optimizer = rng.choice(["gd", "gd", "momentum", "adam"])
    parameters = {
        "epochs": epochs,
        "learning_rate": 0.5 if optimizer != "adam" else 0.05,
        "neurons": neurons,
        "activations": activations,
        "granularity": granularity,
        "workers": workers,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "seed": rng.randrange(1000),
    }
    if rng.random() < 0.2:
        parameters["seed"] = None  # the launcher draws it (the simulator's `secrets` is seeded)
    scenario = Scenario(parameters, examples, features, rng.randrange(1000), rates or STORMY)
    if epochs >= 2 and parameters["seed"] is not None and rng.random() < 0.25:
        costs = reference(scenario, parameters["seed"])[1]
        if costs[1] < costs[0]:
            parameters["threshold"] = (costs[0] + costs[1]) / 2  # the first epoch is above, the second below
    if workers > 1:  # from the data seed, not a draw: a seed whose run reduces in slices keeps its whole schedule
        parameters["reduce"] = ("slices", "shard", "slices", "workers")[scenario.data_seed % 4]
    return scenario


def draw_rates(rng) -> Rates:
    """How stormy a seed is: each kind of fault calm, light or heavy."""

    def level(heavy: float) -> float:
        return rng.choice([0.0, heavy / 3, heavy, heavy])

    return Rates(
        lose=level(0.05),
        duplicate=level(0.2),
        delay=level(0.15),
        throttle=level(0.08),
        freeze=level(0.02),
        crash=level(0.04),
        lost_answer=level(0.04),
        skew=level(0.08),
        concurrent_launch=level(0.3),
        stop=level(0.4),
        resume=level(0.12),
        resume_after_stop=0.7,
    )


def reference(scenario: Scenario, seed: int) -> tuple[dict, list[float], dict]:
    """(params, epoch costs, optimizer state) of the plain NumPy loop for this scenario and seed."""
    return _reference(
        json.dumps(scenario.parameters, sort_keys=True), scenario.examples, scenario.features, scenario.data_seed, seed
    )


@lru_cache(maxsize=4096)
def _reference(parameters_json: str, examples: int, features: int, data_seed: int, seed: int):
    p = json.loads(parameters_json)
    X, y = blobs(examples, features, data_seed)
    options = {key: p[key] for key in ("batch_size", "optimizer", "threshold") if p.get(key) is not None}
    return training.train_reference_state(
        X,
        y,
        neurons=p["neurons"],
        activations=p["activations"],
        learning_rate=p["learning_rate"],
        epochs=p["epochs"],
        seed=seed,
        workers=p.get("workers", 1),
        **options,
    )
