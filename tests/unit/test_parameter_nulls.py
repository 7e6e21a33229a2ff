"""Adversarial review of issue 17's parameter table: kills a mutant that every table test lets live."""

import pytest

from lnn_core.ml.config import TrainingConfig

BASE = {
    "epochs": 5,
    "learning_rate": 0.1,
    "neurons": [3, 1],
    "activations": ["relu", "sigmoid"],
    "data": "runs/r1/data.npz",
}


@pytest.mark.parametrize(
    "key, stack_default", [("seed", 7), ("batch_size", 64), ("threshold", 0.01), ("shuffle_seed", 3)]
)
def test_an_explicit_null_in_parameters_json_overrides_the_stacks_default(key, stack_default):
    """`NULLABLE_KEYS = ()` survives test_parameters, test_training_parameters, test_config, test_cli,
    test_cli_help and test_settings: a run's `"seed": null` (draw one), `"batch_size": null` (the whole set) must
    win over a stack deployed with `-c seed=7` / `-c batch_size=64`."""
    config = TrainingConfig.from_parameters({**BASE, key: None}, defaults={**BASE, key: stack_default})
    assert getattr(config, key) is None
