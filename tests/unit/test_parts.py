"""Training data in parts, the pure pieces: the mini-batch rule (`shards.part_batch`), the reference on parts, the
client's split, the finish's fit over parts, common.npz, and each part's memory check."""

import io

import numpy as np
import pytest

from lnn_cli.datafiles import data_in_parts
from lnn_cli.inputs import validate_run
from lnn_core.errors import LnnInputError
from lnn_core.launch.budget import (
    ArrayHeader,
    NpzLayout,
    check_part_fits,
    check_training_fits,
    inspect_npz,
)
from lnn_core.ml import batching, diagnostics, network, training
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.dataset import load_common_data, load_training_data
from lnn_core.ml.shards import batch_examples, part_batch, part_bounds
from lnn_core.protocol.layout import params_key
from tests.conftest import blobs

OPTIONS = {
    "neurons": [4, 1],
    "activations": ["tanh", "sigmoid"],
    "learning_rate": 0.05,
    "epochs": 3,
    "seed": 5,
    "batch_size": 8,
    "optimizer": "adam",
    "l2": 0.01,
    "workers": 3,
}


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def arrays_of(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as file:
        return {name: file[name] for name in file.files}


def test_part_bounds_are_the_parts_rows_in_order():
    assert part_bounds([3, 2, 4]) == [slice(0, 3), slice(3, 5), slice(5, 9)]


def test_a_parts_share_of_a_batch_is_its_examples_in_the_batchs_order_as_its_own_columns():
    batch = np.array([7, 1, 4, 3, 0, 8])
    assert part_batch(batch, slice(3, 5)).tolist() == [1, 0]  # examples 4 and 3, in that order
    assert part_batch(batch, slice(0, 3)).tolist() == [1, 0]  # examples 1 and 0
    assert part_batch(np.array([0, 1]), slice(3, 5)).size == 0  # none of this batch
    assert part_batch(slice(0, 9), slice(3, 5)) == slice(0, 2)  # the whole set: the whole part
    shares = [part_batch(batch, rows) for rows in part_bounds([3, 2, 4])]
    assert sorted(
        int(index) + rows.start for share, rows in zip(shares, part_bounds([3, 2, 4])) for index in share
    ) == sorted(batch.tolist())
    assert batch_examples(slice(0, 9), 9) == 9 and batch_examples(batch, 9) == 6


def test_the_reference_on_parts_takes_every_batch_of_the_one_file_and_groups_only_its_sum():
    X, y = blobs(40)
    on_parts = training.train_reference(X, y, **OPTIONS, parts=[14, 13, 13])
    one_file = training.train_reference(X, y, **OPTIONS)
    assert np.allclose(on_parts[1], one_file[1], rtol=1e-12) and on_parts[1] != one_file[1]
    on_other_parts = training.train_reference(X, y, **OPTIONS, parts=[10, 10, 20])
    assert any(on_other_parts[0][name].tobytes() != on_parts[0][name].tobytes() for name in on_parts[0])  # bounds count


def test_the_reference_on_parts_with_shards_that_take_nothing_of_a_batch():
    X, y = blobs(40)
    options = {**OPTIONS, "batch_size": 2}
    bounds = part_bounds([14, 13, 13])
    empty = [
        batch_examples(part_batch(batch, rows), 14) == 0
        for batch in batching.minibatches(40, 2, 5, 1)
        for rows in bounds
    ]
    assert any(empty)
    params, costs = training.train_reference(X, y, **options, parts=[14, 13, 13])
    assert np.all(np.isfinite(costs)) and costs[-1] < costs[0]


@pytest.mark.parametrize("parts", [[20, 20], [14, 13, 12], [40, 0, 0]])
def test_the_reference_refuses_parts_that_are_not_the_workers_and_the_rows(parts):
    X, y = blobs(40)
    with pytest.raises(
        LnnInputError, match="parts must be 3 \\(workers\\) positive numbers of examples adding up to 40"
    ):
        training.train_reference(X, y, **OPTIONS, parts=parts)


def test_the_client_splits_contiguous_rows_as_stored_and_keeps_the_rest_in_common():
    X = np.arange(70, dtype=np.uint8).reshape(10, 7)
    y = np.arange(10) % 2
    files = data_in_parts(npz(X=X, y=y, X_test=X[:2], y_test=y[:2], classes=np.array(["a", "b"])), 3)
    assert sorted(files) == ["common.npz", "part-0-of-3.npz", "part-1-of-3.npz", "part-2-of-3.npz"]
    parts = [arrays_of(files[f"part-{k}-of-3.npz"]) for k in range(3)]
    assert [len(part["X"]) for part in parts] == [4, 3, 3] and all(sorted(part) == ["X", "y"] for part in parts)
    assert parts[0]["X"].dtype == np.uint8 and np.array_equal(np.concatenate([part["X"] for part in parts]), X)
    assert np.array_equal(np.concatenate([part["y"] for part in parts]), y)
    assert sorted(arrays_of(files["common.npz"])) == ["X_test", "classes", "y_test"]
    assert arrays_of(data_in_parts(npz(X=X, y=y), 2)["common.npz"]) == {}


def test_the_fit_over_parts_is_the_fit_over_the_whole_set():
    rng = np.random.RandomState(0)
    params = network.init_params([5, 6, 3], "he", 1)
    params["W1"][0] = -1.0  # unit 0 of layer 1: relu(-sum(x) + b), dead where every x > 0 ...
    params["b1"][0] = 0.0
    X = np.abs(rng.randn(5, 30))
    X[:, 20:] = -X[:, 20:]  # ... but alive for the examples of the last part
    activations = ["relu", "softmax"]
    whole = diagnostics.training_fit(params, X, activations)
    parts = diagnostics.combined_fit(
        [diagnostics.part_fit(params, X[:, cols], activations) for cols in (slice(0, 10), slice(10, 20), slice(20, 30))]
    )
    first_two = diagnostics.combined_fit(
        [diagnostics.part_fit(params, X[:, cols], activations) for cols in (slice(0, 10), slice(10, 20))]
    )
    assert np.allclose(parts.AL, whole.AL) and parts.dead_units == whole.dead_units
    assert first_two.dead_units[0] >= whole.dead_units[0] + 1  # dead only when 0 in every part


def test_common_arrays_load_without_the_examples():
    common = load_common_data(
        npz(X_test=np.ones((2, 4)), y_test=np.array([0, 1]), classes=np.array(["a", "b"])),
        source="c",
        features=4,
        target_shape=(),
    )
    assert common.X.shape == (0, 4) and common.y.shape == (0,) and common.classes == ("a", "b")
    assert load_common_data(npz(), source="c", features=4, target_shape=(2,)).y.shape == (0, 2)
    config = TrainingConfig.from_parameters({**OPTIONS, "granularity": "epoch", "data": "runs/r/data/"})
    common.check_fits(config)  # the labels of the parts are not there to check


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        ({"X": np.ones((2, 4))}, "holds 'X'; common.npz holds only X_test, y_test, classes and example_shape"),
        ({"X_test": np.ones((2, 4))}, "only one of X_test and y_test"),
        ({"X_test": np.ones((2, 3)), "y_test": np.ones(2)}, "X_test has 3 features but the parts' X 4"),
        ({"X_test": np.ones((2, 4)), "y_test": np.ones((2, 2))}, "y_test has shape (2, 2) but the parts' y holds ()"),
        ({"example_shape": np.array([3])}, "example_shape (3,) holds 3 values but X has 4 features"),
    ],
)
def test_bad_common_arrays_are_refused(arrays, fragment):
    with pytest.raises(LnnInputError) as error:
        load_common_data(npz(**arrays), source="c", features=4, target_shape=())
    assert fragment in str(error.value)


def layout(m: int, n: int) -> NpzLayout:
    X = ArrayHeader("X", (m, n), np.dtype("float64"), 128 + 8 * m * n)
    y = ArrayHeader("y", (m,), np.dtype("float64"), 128 + 8 * m)
    return NpzLayout({"X": X, "y": y}, X.member_bytes + y.member_bytes)


def test_a_part_counts_what_its_worker_keeps_of_the_whole_set():
    part = layout(1_000, 10)
    size = part.uncompressed_bytes
    small = check_part_fits(part, compressed_bytes=size, examples=1_000, neurons=[8, 3], memory_mb=1024, source="p")
    large = check_part_fits(part, compressed_bytes=size, examples=1_001_000, neurons=[8, 3], memory_mb=1024, source="p")
    assert large.total - small.total == 1_000_000 * (2 + 2 * 3 + 1) * 8  # order, batches; outputs, targets, labels
    with pytest.raises(
        LnnInputError, match=r"p \(1,000 of 20,000,000 examples in parts\) with network 10-8-3 needs about"
    ):
        check_part_fits(part, compressed_bytes=size, examples=20_000_000, neurons=[8, 3], memory_mb=1024, source="p")
    with pytest.raises(LnnInputError, match="needs about .* to load"):  # half the trainer's memory, as one file
        check_part_fits(
            layout(3_000_000, 10),
            compressed_bytes=240_000_000,
            examples=3_000_000,
            neurons=[8, 3],
            memory_mb=1024,
            source="p",
        )


def test_the_client_checks_each_part_where_the_whole_file_would_be_refused(tmp_path):
    X, y = blobs(8000, features=100)
    path = tmp_path / "big.npz"
    path.write_bytes(npz(X=X, y=y))
    parameters = {**OPTIONS, "batch_size": 2000, "granularity": "epoch"}
    with pytest.raises(LnnInputError, match="but the trainer has 160 MB"):
        validate_run({**parameters, "workers": 1}, path, trainer_memory_mb=160)
    with pytest.raises(LnnInputError, match="but the trainer has 160 MB"):
        validate_run({**parameters, "workers": 4}, path, trainer_memory_mb=160)  # one file for four workers
    inputs = validate_run({**parameters, "workers": 4}, path, trainer_memory_mb=160, in_parts=True)
    assert sorted(inputs.parts) == ["common.npz", *(f"part-{k}-of-4.npz" for k in range(4))]
    loaded = [load_training_data(inputs.parts[f"part-{k}-of-4.npz"], source="p") for k in range(4)]
    assert np.array_equal(np.concatenate([part.X for part in loaded]), X)
    whole = inspect_npz(io.BytesIO(npz(X=X, y=y)), source="w")
    with pytest.raises(LnnInputError):
        check_training_fits(whole, [4, 1], memory_mb=160, source="w")


def test_the_client_refuses_more_workers_than_examples_before_anything_is_uploaded(tmp_path):
    """A part without examples, or a shard without an example of a batch, is refused by the launcher after the
    upload; the client names it first."""
    X, y = blobs(3, features=4)
    path = tmp_path / "tiny.npz"
    path.write_bytes(npz(X=X, y=y))
    parameters = {**OPTIONS, "granularity": "epoch", "batch_size": None}
    with pytest.raises(LnnInputError, match=r"^workers 4 is more than the 3 training examples of .*tiny.npz: each "):
        validate_run({**parameters, "workers": 4}, path, in_parts=True)
    with pytest.raises(LnnInputError, match=r"^workers 2 is more than the 1 examples of the smallest mini-batch"):
        validate_run({**parameters, "workers": 2, "validation_split": 0.5, "batch_size": 1}, path, in_parts=True)
    assert len(validate_run({**parameters, "workers": 3}, path, in_parts=True).parts) == 4


def test_data_in_parts_is_a_folder_and_needs_workers():
    config = TrainingConfig.from_parameters({**OPTIONS, "granularity": "epoch", "data": "runs/r/data/"})
    assert params_key(config, 1) == "runs/r/state/params-e0000001.npz"  # the run's state, not the data folder's
    with pytest.raises(LnnInputError, match=r"data in parts \(runs/r/data/\) needs workers 2 or more"):
        TrainingConfig.from_parameters({**OPTIONS, "granularity": "epoch", "workers": 1, "data": "runs/r/data/"})
    with pytest.raises(LnnInputError, match="or of a folder of parts, ending in /"):
        TrainingConfig.from_parameters({**OPTIONS, "granularity": "epoch", "data": "runs/r/data"})


def test_start_with_k_workers_uploads_k_parts_of_data_one_function_could_not_hold(tmp_path, monkeypatch):
    """The MNIST-sized job that `lnn start` refuses at K = 1 on 1,024 MB (test_cli) is uploaded in 4 parts at K = 4."""
    from argparse import Namespace
    from types import SimpleNamespace

    from rich.console import Console

    from lnn_cli import run_commands
    from lnn_core.launch.launcher import LaunchLimits
    from tests.unit.test_cli import DEMO_PARAMETERS, big_job

    uploads = []
    monkeypatch.setattr(run_commands, "upload_run_inputs", lambda *args, **kwargs: uploads.append((args, kwargs)))
    table = SimpleNamespace(get_run=lambda run_id: None, run_ids=lambda status=None: [])
    stack = SimpleNamespace(
        launch_limits=lambda: LaunchLimits(trainer_memory_mb=1024),
        launch_defaults=dict,
        ports=SimpleNamespace(table=table, store=SimpleNamespace(read_current=lambda key: None)),  # no sweeps
        outputs=SimpleNamespace(stack_name="s", bucket="b"),
        session=None,
    )
    parameters = {
        **DEMO_PARAMETERS,
        "neurons": [128, 64, 10],
        "activations": ["relu", "relu", "softmax"],
        "granularity": "epoch",
        "workers": 4,
        "seed": 1,
    }
    run_commands.command_start(
        Namespace(data=big_job(tmp_path)[1], name="big"), parameters, stack, console=Console(file=io.StringIO())
    )
    ((args, kwargs),) = uploads
    assert sorted(kwargs["parts"]) == ["common.npz", *(f"part-{k}-of-4.npz" for k in range(4))]
    assert [len(arrays_of(kwargs["parts"][f"part-{k}-of-4.npz"])["X"]) for k in range(4)] == [15_000] * 4
