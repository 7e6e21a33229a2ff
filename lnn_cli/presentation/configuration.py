"""The effective configuration of a run, after defaults, as `lnn local` and `lnn start` print it: a few lines."""

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from lnn_core.ml.parameters import TABLE

LAUNCH_WAIT_SECONDS = 20.0  # S3 -> EventBridge -> a cold LaunchLambda takes a few seconds on AWS
POLL_SECONDS = 0.5
# The first two lines; the others are shown when they differ from their defaults.
NETWORK = ("neurons", "activations", "init", "seed")
TRAINING = ("epochs", "learning_rate", "optimizer", "granularity")


def configuration_lines(config: dict[str, Any], *, seed_drawn: bool | None = None) -> list[str]:
    """`config` (`TrainingConfig.to_parameters()`) as 'network: ...', 'training: ...' and, when any differ from
    their defaults, 'options: ...'; an optimizer's own settings only with that optimizer. `seed_drawn`: whether the
    launcher drew the seed (None: it has not launched the run yet)."""

    def value(name: str) -> str:
        raw = config.get(name)
        if isinstance(raw, dict):  # LNN's {"layer1": ...}
            raw = [raw[f"layer{index}"] for index in range(1, len(raw) + 1)]
        if isinstance(raw, (list, tuple)):
            return ",".join(map(str, raw))
        return f"{raw:g}" if isinstance(raw, float) else str(raw)

    def pairs(names) -> str:
        return ", ".join(f"{name} {value(name)}" for name in names)

    if config.get("seed") is None:
        seed = "seed drawn by the launcher"
    else:
        seed = f"seed {value('seed')}" + (" (drawn by the launcher)" if seed_drawn else "")
    options = [
        row.name
        for row in TABLE
        if row.name not in (*NETWORK, *TRAINING, "layers")
        and config.get(row.name) is not None
        and (row.optimizer == config.get("optimizer") if row.optimizer else config[row.name] != row.default)
    ]
    lines = [f"network: {pairs(NETWORK[:-1])}, {seed}", f"training: {pairs(TRAINING)}"]
    return lines + ([f"options: {pairs(options)}"] if options else [])


def show_configuration(console: Console, config: dict[str, Any], *, seed_drawn: bool | None = None) -> None:
    for line in configuration_lines(config, seed_drawn=seed_drawn):
        console.print(f"  {line}", markup=False, highlight=False)


def show_launched_configuration(
    console: Console,
    config: dict[str, Any],
    read_run: Callable[[], dict | None],
    *,
    wait_seconds: float = LAUNCH_WAIT_SECONDS,
) -> None:
    """After an upload starts a run: `config` as checked here with the stack's defaults, which is what the launcher
    computes too. Without a seed, the launcher draws one: wait (at most `wait_seconds`) for its run record."""
    if config.get("seed") is not None:
        show_configuration(console, config)
        return
    deadline = time.monotonic() + wait_seconds
    with console.status("waiting for the launcher to record the run and its seed..."):
        run = read_run()
        while run is None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            run = read_run()
    if run is None:
        show_configuration(console, config)
        console.print(
            f"  (the launcher has not recorded the run within {wait_seconds:g} s; `lnn status` shows its seed "
            "once it has)",
            markup=False,
            highlight=False,
        )
    else:
        show_configuration(console, run["config"], seed_drawn=run.get("seed_drawn"))
