"""A training state's slices as objects: two a slice (the parameters' rows, the optimizer's), or one with gd."""

import numpy as np
import pytest

from lnn_core.errors import RunFailure
from lnn_core.ml import optimizers
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol.layout import state_slice_keys, state_slice_parts
from lnn_core.protocol.round_steps import slice_objects, slice_state, state_slices
from lnn_core.protocol.training_state import training_state


def config(optimizer):
    return TrainingConfig.from_parameters(
        {
            "epochs": 2,
            "learning_rate": 0.1,
            "neurons": [3, 1],
            "activations": ["tanh", "sigmoid"],
            "granularity": "epoch",
            "workers": 2,
            "optimizer": optimizer,
            "data": "runs/r1/data.npz",
        }
    )


def state(optimizer):
    rng = np.random.default_rng(1)
    params = {
        "W1": rng.normal(size=(3, 2)),
        "b1": rng.normal(size=(3, 1)),
        "W2": rng.normal(size=(1, 3)),
        "b2": rng.normal(size=(1, 1)),
    }
    opt = optimizers.init_state(params, optimizer)
    opt["t"] = np.array(7, dtype=np.int64)
    return training_state(params, opt)


@pytest.mark.parametrize(
    "optimizer, parts", [("gd", ("params",)), ("momentum", ("params", "optimizer")), ("adam", ("params", "optimizer"))]
)
def test_a_slice_is_one_object_with_gd_and_two_with_an_optimizer_that_keeps_moments(optimizer, parts):
    cfg = config(optimizer)
    assert state_slice_parts(cfg) == parts
    objects = state_slices(cfg, state(optimizer), epoch=1, batch=1, batches=1)
    assert sorted(objects) == sorted(state_slice_keys(cfg, 1, 1, 1)) and len(objects) == 2 * len(parts)
    for slice_ in range(2):
        mine = [objects[key] for key in sorted(objects) if key.endswith(f"-{slice_:03d}.npz")]
        params, opt = slice_state(cfg, sorted(mine, key=lambda part: "W1" not in part))
        assert sorted(params) == ["W1", "W2", "b1", "b2"] and int(opt["t"]) == 7
        assert sorted(opt) == sorted(optimizers.state_keys(params, optimizer))
        again = slice_objects(cfg, 1, 1, 1, slice_, {**params, **opt})
        assert {key: sorted(value) for key, value in again.items()} == {key: sorted(objects[key]) for key in again}


def test_a_gd_slice_without_its_update_count_is_a_run_failure_naming_it():
    with pytest.raises(RunFailure, match="lacks 't'.*earlier LNN"):
        slice_state(config("gd"), [{"W1": np.zeros((2, 2)), "b1": np.zeros((2, 1))}])
