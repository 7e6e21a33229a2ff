"""Memory guard rails: .npz inspection without reading data, and the training-step memory estimate."""

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from lnn_core.errors import LnnInputError
from lnn_core.launch.budget import (
    MAX_PARAMETERS_BYTES,
    MIB,
    check_npz_fits,
    check_step_fits,
    check_training_fits,
    data_budget_bytes,
    estimate_step_memory,
    inspect_npz,
    positive_int_from,
    suggest_memory_size,
)
from lnn_core.ml import network, training
from lnn_core.ml.config import TrainingConfig, check_run_id
from lnn_core.ml.dataset import load_training_data
from tests.support.arrays import lying_npz, npy_header, npz_bytes, zip_bomb


def test_a_lying_header_is_refused_without_allocating():
    data = lying_npz()
    assert len(data) < 600
    with pytest.raises(LnnInputError, match=r"header of X declares shape \(1048576, 1048576\).*damaged or forged"):
        inspect_npz(io.BytesIO(data), source="bomb.npz")


def test_loading_a_lying_header_is_an_input_error_not_a_memory_error():
    # numpy allocates from the header (8 TiB): the MemoryError becomes a clear refusal
    with pytest.raises(LnnInputError, match="does not fit in memory"):
        load_training_data(lying_npz(), source="bomb.npz")


def test_a_zip_bomb_is_refused_by_its_declared_size():
    data = zip_bomb(4000, 2500)  # 80 MB of zeros
    assert len(data) < 200_000
    layout = inspect_npz(io.BytesIO(data), source="zeros.npz")
    assert layout.uncompressed_bytes > 80_000_000 and layout.shape("X") == (4000, 2500)
    with pytest.raises(LnnInputError, match=r"zeros.npz needs about 1\d\d MB to load .*memory_size="):
        check_npz_fits(layout, compressed_bytes=len(data), memory_mb=128, source="zeros.npz")
    check_npz_fits(layout, compressed_bytes=len(data), memory_mb=1024, source="zeros.npz")  # fits a larger function


def test_only_the_arrays_lnn_reads_are_allowed():
    with pytest.raises(
        LnnInputError, match="holds the array 'notes', which LNN does not read; save only the arrays X, y"
    ):
        inspect_npz(io.BytesIO(npz_bytes(X=np.ones((2, 2)), y=np.ones(2), notes=np.ones(3))), source="extra.npz")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("X.npy", npy_header((1,)) + bytes(8))
        archive.writestr("readme.txt", b"hello")
    with pytest.raises(LnnInputError, match="'readme.txt'"):
        inspect_npz(io.BytesIO(buffer.getvalue()), source="mixed.npz")


def test_object_arrays_and_junk_are_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("X.npy", npy_header((1,), dtype="|O") + bytes(8))
    with pytest.raises(LnnInputError, match="Python objects"):
        inspect_npz(io.BytesIO(buffer.getvalue()), source="objects.npz")
    with pytest.raises(LnnInputError, match="not a readable .npz"):
        inspect_npz(io.BytesIO(b"junk"), source="junk.npz")


def test_honest_data_is_inspected_exactly():
    data = npz_bytes(X=np.zeros((50, 3), dtype=np.uint8), y=np.zeros(50), X_test=np.zeros((5, 3)), y_test=np.zeros(5))
    layout = inspect_npz(io.BytesIO(data), source="ok.npz")
    assert {name: header.shape for name, header in layout.arrays.items()} == {
        "X": (50, 3),
        "y": (50,),
        "X_test": (5, 3),
        "y_test": (5,),
    }
    assert layout.float64_bytes == (150 + 50 + 15 + 5) * 8


def test_a_big_job_is_refused_naming_the_memory_size_it_needs():
    layout = inspect_npz(
        io.BytesIO(npz_bytes(X=np.zeros((60_000, 784), dtype=np.uint8), y=np.zeros(60_000, dtype=np.uint8))),
        source="mnist.npz",
    )
    with pytest.raises(LnnInputError) as error:
        check_training_fits(layout, (128, 64, 10), memory_mb=1024, source="mnist.npz")
    message = str(error.value)
    assert "60,000 x 784 examples with network 784-128-64-10 needs about 1,2" in message
    assert "the trainer has 1024 MB; deploy with -c memory_size=1216" in message
    check_training_fits(layout, (128, 64, 10), memory_mb=1216, source="mnist.npz")


def test_a_small_job_fits():
    estimate = estimate_step_memory(455, 30, (20, 7, 5, 1), test_examples=114)
    assert estimate.total < 160 * MIB  # the runtime overhead and a few hundred KB
    check_step_fits(estimate, memory_mb=256, shape="demo")


def test_a_job_beyond_lambda_is_told_to_shrink():
    with pytest.raises(LnnInputError, match="more than Lambda's 10240 MB; use fewer examples or a smaller network"):
        check_step_fits(estimate_step_memory(1_000_000, 784, (1024, 10)), memory_mb=10240, shape="huge")


def test_optimizer_copies_count_the_parameters_again():
    plain = estimate_step_memory(100, 784, (128, 10))
    adam = estimate_step_memory(100, 784, (128, 10), optimizer_copies=2)
    weights = (784 * 128 + 128 + 128 * 10 + 10) * 8
    assert adam.parameters - plain.parameters == 2 * weights


def test_the_estimate_matches_a_traced_training_step():
    """One forward/backward pass as the trainer runs it, traced: the estimate (less the fixed overhead) is within
    15%."""
    m, n0, neurons, activations = 4000, 784, (128, 64, 10), ("relu", "relu", "softmax")
    rng = np.random.default_rng(0)
    X8, y = rng.integers(0, 256, size=(m, n0), dtype=np.uint8), rng.integers(0, 10, size=m)
    tracemalloc.start()
    try:
        X = X8.astype(np.float64)
        X /= 255.0
        X_cols, Y, labels = (
            network.to_columns(X),
            network.targets(y.astype(np.float64), "softmax", 10),
            y.astype(np.float64),
        )
        params = network.init_params([n0, *neurons], "he", 1)
        training.gradient_descent_epoch(params, X_cols, Y, activations, 0.1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = estimate_step_memory(m, n0, neurons)
    ratio = peak / (estimate.total - estimate.overhead)
    print(f"traced peak / estimate less overhead: {ratio:.4f}")
    assert 0.85 < ratio < 1.15, ratio
    del labels


def test_sizes_and_environment():
    assert data_budget_bytes(1024) == 512 * MIB
    assert suggest_memory_size(1 * MIB) == 128 and suggest_memory_size(1025 * MIB) == 1088
    assert positive_int_from({}, "X", 7) == 7 and positive_int_from({"X": "2048"}, "X", 7) == 2048
    with pytest.raises(RuntimeError, match="X must be a whole number"):
        positive_int_from({"X": "lots"}, "X", 7)
    assert positive_int_from({"X": ""}, "X", None) is None
    assert MAX_PARAMETERS_BYTES == 65_536


def test_run_ids_may_not_end_in_a_newline():
    assert check_run_id("run-1") == "run-1"
    for bad in ("run-1\n", "run-1\r\n", "\nrun-1", ".", "..", ""):
        with pytest.raises(LnnInputError, match="is invalid"):
            check_run_id(bad)


@pytest.mark.parametrize(
    "key, segment", [("runs/a/../b/data.npz", "'..'"), ("runs/a/./data.npz", "'.'"), ("runs/a//data.npz", "empty")]
)
def test_data_keys_may_not_have_dot_or_empty_segments(key, segment):
    parameters = {"epochs": 1, "learning_rate": 0.1, "neurons": [1], "activations": ["sigmoid"], "data": key}
    with pytest.raises(LnnInputError, match=f"data '{key}' has an {segment} path segment"):
        TrainingConfig.from_parameters(parameters)
