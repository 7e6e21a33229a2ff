"""LNN's training against an independent implementation: three runs computed in PyTorch float64.

tests/reference/torch_reference.npz was made by tests/reference/make_torch_fixture.py (versions and date in
torch_reference.json): forward pass, cost, autograd gradients and the optimizer update all in torch, from
LNN's documented definitions; only the initial parameters and each epoch's example order were taken from LNN.
train_reference_state on the same data and options must give the final parameters, every epoch's cost and the
optimizer state within a relative 1e-10 (the runs measured ~1e-14: only rounding differs). No fixture value is
zero, so there is no absolute tolerance.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from lnn_core.ml.batching import minibatches
from lnn_core.ml.network import init_params
from lnn_core.ml.training import train_reference, train_reference_state

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
META = json.loads((REFERENCE / "torch_reference.json").read_text())
RUNS = META["runs"]
RTOL = 1e-10


@pytest.fixture(scope="module")
def fixture():
    with np.load(REFERENCE / "torch_reference.npz") as data:
        return {key: data[key] for key in data.files}


def stored(fixture, run, group):
    """{name: array} of the fixture's "<run>.<group>.<name>" entries."""
    prefix = f"{run}.{group}."
    return {key[len(prefix) :]: value for key, value in fixture.items() if key.startswith(prefix)}


def test_the_three_runs_are_there():
    assert set(RUNS) == {"binary_adam_l2", "softmax_momentum_l2", "regression_gd"}
    assert {RUNS[run]["options"]["optimizer"] for run in RUNS} == {"adam", "momentum", "gd"}
    assert RUNS["binary_adam_l2"]["options"]["l2"] > 0 and RUNS["binary_adam_l2"]["options"]["batch_size"] < 50
    assert [RUNS[run]["options"]["activations"][-1] for run in RUNS] == ["sigmoid", "softmax", "linear"]


@pytest.mark.parametrize("run", sorted(RUNS))
def test_the_conventions_taken_from_lnn_are_unchanged(fixture, run):
    """The inputs both sides share (initial parameters, example order): if these fail, regenerate the fixture."""
    options = RUNS[run]["options"]
    X = fixture[f"{run}.X"]
    m, n0 = X.shape
    init = init_params([n0, *options["neurons"]], options["init"], options["seed"])
    expected = stored(fixture, run, "init")
    assert set(init) == set(expected)
    for name, value in init.items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    orders = fixture[f"{run}.orders"]
    assert orders.shape == (options["epochs"], m)
    for epoch in range(1, options["epochs"] + 1):
        batches = minibatches(m, options["batch_size"], options["shuffle_seed"], epoch)
        np.testing.assert_array_equal(np.concatenate([np.arange(m)[b] for b in batches]), orders[epoch - 1])


@pytest.mark.parametrize("run", sorted(RUNS))
def test_training_matches_torch(fixture, run):
    options = RUNS[run]["options"]
    X, y = fixture[f"{run}.X"], fixture[f"{run}.y"]
    params, costs, state = train_reference_state(X, y, **options)

    np.testing.assert_allclose(costs, fixture[f"{run}.costs"], rtol=RTOL, atol=0)
    expected = stored(fixture, run, "params")
    assert set(params) == set(expected)
    for name, value in params.items():
        np.testing.assert_allclose(value, expected[name], rtol=RTOL, atol=0, err_msg=name)
    expected_state = stored(fixture, run, "state")
    assert set(state) == set(expected_state)
    assert int(state["t"]) == int(expected_state["t"])
    for name, value in state.items():
        if name != "t":
            np.testing.assert_allclose(value, expected_state[name], rtol=RTOL, atol=0, err_msg=name)

    # train_reference is train_reference_state without the state
    again, costs_again = train_reference(X, y, **options)
    assert costs_again == costs and all(np.array_equal(again[name], params[name]) for name in params)
