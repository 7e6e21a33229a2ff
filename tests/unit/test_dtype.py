"""The `dtype` parameter (issue 19): float32 computes, stores and moves float32, with no silent upcast anywhere in an
epoch, and the memory estimate follows it. The modes' bit-for-bit equality in float32 is in tests/integration
(test_training_chain, test_minibatch_training, test_workers)."""

import io
import warnings

import numpy as np
import pytest

from lnn_cli.main import main
from lnn_core.errors import LnnInputError
from lnn_core.launch.budget import estimate_step_memory, value_bytes
from lnn_core.ml import batching, diagnostics, metrics, network, optimizers, shards, training
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.dataset import ROUNDING_ROWS, load_training_data
from lnn_core.protocol.results import finite_params
from lnn_stack.settings.context import ContextError
from lnn_stack.settings.training import TrainingDefaults
from tests.unit.test_cli import assert_one_line_error

F32 = np.dtype("float32")
BASE = {
    "epochs": 2,
    "learning_rate": 0.1,
    "neurons": [4, 1],
    "activations": ["relu", "sigmoid"],
    "data": "runs/r1/data.npz",
}


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# ---- the parameter ---------------------------------------------------------------------------------------------


def test_dtype_is_float64_unless_float32_is_asked_for():
    assert TrainingConfig.from_parameters(BASE).dtype == "float64"
    config = TrainingConfig.from_parameters({**BASE, "dtype": "float32"})
    assert config.dtype == "float32" and config.to_parameters()["dtype"] == "float32"
    assert value_bytes(config) == 4 and value_bytes(TrainingConfig.from_parameters(BASE)) == 8


@pytest.mark.parametrize("value", ["float16", "Float32", 32, True])
def test_a_bad_dtype_is_one_clear_error(value):
    with pytest.raises(LnnInputError) as caught:
        TrainingConfig.from_parameters({**BASE, "dtype": value})
    assert str(caught.value) == f"dtype must be one of float64, float32; got {value!r}"


def test_the_dtype_flag_reaches_the_config_and_a_bad_one_is_one_line(tmp_path, capsys, monkeypatch):
    import lnn_cli.main as cli_main
    from lnn_cli.inputs import validate_run

    seen = {}
    defaults = TrainingDefaults().to_parameters()
    monkeypatch.setattr(
        cli_main,
        "command_local",
        lambda args, parameters, console: (
            seen.update(config=validate_run(parameters, args.data, defaults=defaults).config) or 0
        ),
    )
    assert main(["local", "--dtype", "float32"]) == 0 and seen["config"].dtype == "float32"
    try:
        code = main(["local", "--out", str(tmp_path / "out"), "--dtype", "float16"])
    except SystemExit as exit_info:
        code = exit_info.code
    assert_one_line_error(capsys, code, "--dtype", "invalid choice", "float32")


def test_the_context_default_reaches_the_launcher_only_when_set():
    assert "dtype" not in TrainingDefaults.from_context({}).to_parameters()  # existing stacks unchanged
    assert TrainingDefaults.from_context({"dtype": "float32"}).to_parameters()["dtype"] == "float32"
    with pytest.raises(ContextError, match="Context parameter 'dtype' must be one of float64, float32"):
        TrainingDefaults.from_context({"dtype": "double"})


# ---- no silent upcast: every operation of an epoch stays float32 -----------------------------------------------


@pytest.fixture
def data32():
    rng = np.random.RandomState(0)
    X, y = rng.rand(30, 5), (rng.rand(30) > 0.5).astype(np.float64)
    return network.to_columns(X, "float32"), network.targets(y, "sigmoid", 1, "float32")


@pytest.mark.parametrize("hidden", ["relu", "sigmoid", "tanh", "linear"])
def test_every_operation_of_an_epoch_keeps_float32(data32, hidden):
    X, Y = data32
    assert X.dtype == Y.dtype == F32
    params = network.init_params([5, 4, 3, 1], "he", 1, "float32")
    assert {value.dtype for value in params.values()} == {F32}
    activations = [hidden, "tanh", "sigmoid"]
    batch = batching.minibatches(30, 8, 7, 1)[0]
    A0, Yb = batching.batch_columns(X, batch), batching.batch_columns(Y, batch)
    assert A0.dtype == Yb.dtype == F32
    A, caches = A0, []
    for layer in (1, 2, 3):  # forward
        A_next, Z = network.layer_forward(A, params[f"W{layer}"], params[f"b{layer}"], activations[layer - 1])
        assert A_next.dtype == Z.dtype == F32, layer
        caches.append((A, Z))
        A = A_next
    dZ = network.output_delta(A, Yb, "sigmoid")  # backward, with L2
    assert dZ.dtype == F32
    grads = {}
    for layer in (3, 2):
        dA, grads[f"dW{layer}"], grads[f"db{layer}"] = network.layer_backward(
            dZ, caches[layer - 1][0], params[f"W{layer}"], np.float64(0.3)
        )
        dZ = network.hidden_delta(dA, caches[layer - 2][1], activations[layer - 2])
        assert dA.dtype == dZ.dtype == F32, layer
    grads["dW1"], grads["db1"] = network.weight_gradients(dZ, A0, params["W1"], 0.3)
    assert {value.dtype for value in grads.values()} == {F32}
    whole = network.backward_pass(params, caches, A, Yb, activations, 0.3)
    assert all(grads[name].tobytes() == whole[name].tobytes() for name in whole)
    for optimizer in optimizers.OPTIMIZERS:  # update, with NumPy float64 scalars for its settings
        state = optimizers.init_state(params, optimizer)
        for _ in range(2):
            params_after, state = optimizers.update(
                params, grads, state, optimizer=optimizer, learning_rate=np.float64(0.01), beta=np.float64(0.9)
            )
        assert {value.dtype for value in [*params_after.values(), *state.values()] if value.ndim} == {F32}, optimizer
    assert {value.dtype for value in network.apply_update(params, grads, np.float64(0.01)).values()} == {F32}


def test_the_cost_is_summed_in_float32(data32):
    X, Y = data32
    params = network.init_params([5, 1], "lecun", 2, "float32")
    AL, _ = network.forward_pass(params, X, ["sigmoid"])
    P = np.clip(AL, np.float32(1e-7), np.float32(1 - 1e-7))
    in_float32 = -(Y * np.log(P) + (np.float32(1) - Y) * np.log(np.float32(1) - P)).sum()
    assert in_float32.dtype == F32 and network.loss_sum(AL, Y, "sigmoid") == float(in_float32)
    assert network.batch_cost_sum(AL, Y, "sigmoid", params, 0.5) == float(in_float32) + network.l2_penalty(params, 0.5)


def test_a_saturated_float32_output_has_a_finite_cost():
    """1 - 1e-15 is 1 in float32: clipped there, a sigmoid output of exactly 1 for class 1 made log(0) * 0 = NaN."""
    AL = np.array([[1.0, 0.0, 1.0]], dtype=np.float32)
    Y = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = network.loss_sum(AL, Y, "sigmoid")
    # the one wrong example: 1 - 1e-7 rounds to 1 - 2**-23 in float32
    assert loss == pytest.approx(-np.log(1 - np.float64(np.float32(1 - network.EPSILON_FLOAT32))), rel=1e-6)
    softmax = network.loss_sum(np.array([[1.0], [0.0]], np.float32), np.array([[0.0], [1.0]], np.float32), "softmax")
    assert np.isfinite(softmax)


def test_shards_move_and_reduce_float32(data32):
    X, Y = data32
    params = network.init_params([5, 4, 1], "lecun", 3, "float32")
    results = [
        shards.shard_sums(params, shards.shard_columns(X, part), shards.shard_columns(Y, part), ["tanh", "sigmoid"])
        for part in shards.shard_slices(30, 2)
    ]
    assert all({value.dtype for value in sums.values()} == {F32} for sums, _ in results)
    grads, cost_sum = shards.combine_shards(params, results, 30, np.float64(0.2))
    assert {value.dtype for value in grads.values()} == {F32} and isinstance(cost_sum, float)


def test_the_reference_loop_in_float32_keeps_every_array_float32():
    rng = np.random.RandomState(1)
    X, y = rng.rand(40, 3), rng.randint(0, 3, 40)
    for workers in (1, 2):
        params, costs, state = training.train_reference_state(
            X,
            y,
            neurons=[6, 3],
            activations=["relu", "softmax"],
            learning_rate=0.01,
            epochs=2,
            seed=4,
            batch_size=16,
            optimizer="adam",
            l2=0.1,
            workers=workers,
            dtype="float32",
        )
        assert {value.dtype for value in [*params.values(), *state.values()] if value.ndim} == {F32}
        assert all(isinstance(cost, float) and np.isfinite(cost) for cost in costs)
    float64 = training.train_reference(
        X, y, neurons=[6, 3], activations=["relu", "softmax"], learning_rate=0.01, epochs=2, seed=4
    )[0]
    assert {value.dtype for value in float64.values()} == {np.dtype("float64")}


def test_a_float32_model_predicts_and_is_measured_in_float32():
    rng = np.random.RandomState(2)
    X = rng.rand(10, 3)
    params = network.init_params([3, 2, 2], "lecun", 0, "float32")
    assert metrics.predict_proba(params, X, ["tanh", "softmax"]).dtype == F32
    regression = network.init_params([3, 2], "lecun", 0, "float32")
    assert metrics.predict(regression, X, ["linear"]).dtype == F32
    assert isinstance(metrics.rmse(regression, X, rng.rand(10, 2), ["linear"]), float)
    fit = diagnostics.training_fit(params, network.to_columns(X, "float32"), ["tanh", "softmax"])
    assert fit.AL.dtype == F32


def test_finite_params_takes_float32_without_an_overflow_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params = {"W1": np.full((2, 2), 3e38, np.float32)}
        assert finite_params(params, 1) is params
    from lnn_core.errors import RunFailure

    with pytest.raises(RunFailure, match="diverged"):
        finite_params({"W1": np.array([[np.inf]], np.float32)}, 1)


# ---- where the data are cast -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stored", ["uint8", "float64", "int16"])
def test_data_load_as_float64_then_round_once_to_float32_as_to_columns_does(stored):
    rng = np.random.RandomState(3)
    X = (rng.rand(ROUNDING_ROWS + 5, 3) * 200).astype(stored)  # more rows than one rounding block
    raw = npz(X=X, y=np.zeros(len(X)), X_test=X[:4], y_test=np.zeros(4))
    as64 = load_training_data(raw, source="d")
    as32 = load_training_data(raw, source="d", dtype="float32")
    assert as64.X.dtype == np.float64 and as32.X.dtype == as32.X_test.dtype == F32
    assert as32.X.tobytes() == as64.X.astype(np.float32).tobytes()
    assert network.to_columns(as64.X, "float32").tobytes() == network.to_columns(as32.X, "float32").tobytes()
    assert as32.y.dtype == np.float64  # labels stay float64: the targets Y are rounded from them


def test_data_beyond_float32_is_refused_in_one_line():
    raw = npz(X=np.array([[1.0, 1e39]]), y=np.zeros(1))
    load_training_data(raw, source="d")  # fine in float64
    with pytest.raises(LnnInputError, match=r"^d: X holds values beyond float32's range .*train with dtype float64$"):
        load_training_data(raw, source="d", dtype="float32")


def test_a_float32_run_of_data_beyond_float32_is_refused_before_it_starts(tmp_path):
    from lnn_cli.inputs import validate_run

    path = tmp_path / "big.npz"
    path.write_bytes(npz(X=np.array([[1.0, 1e39], [0.0, 1.0]]), y=np.array([0, 1])))
    parameters = {key: value for key, value in BASE.items() if key != "data"}
    assert validate_run(parameters, path).training_data.X.dtype == np.float64
    with pytest.raises(LnnInputError, match="X holds values beyond float32's range"):
        validate_run({**parameters, "dtype": "float32"}, path)


# ---- memory ----------------------------------------------------------------------------------------------------


def test_the_memory_estimate_halves_the_data_and_parameter_terms_in_float32():
    float64 = estimate_step_memory(60_000, 784, (128, 64, 10), test_examples=10_000, optimizer_copies=2)
    float32 = estimate_step_memory(60_000, 784, (128, 64, 10), test_examples=10_000, optimizer_copies=2, itemsize=4)
    labels = (60_000 + 10_000) * 8  # float64 in both
    assert float32.data - labels == (float64.data - labels) // 2
    assert (float32.activations, float32.working, float32.parameters) == (
        float64.activations // 2,
        float64.working // 2,
        float64.parameters // 2,
    )
    assert float32.overhead == float64.overhead
