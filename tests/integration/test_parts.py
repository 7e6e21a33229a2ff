"""Training data in K parts (issue 19): worker k loads only part k, and a run equals
`training.train_reference(..., workers=K, parts=...)` bit for bit; the launcher checks the parts by their headers and
refuses, creating nothing, parts that are missing, of another K, of mismatched shapes, or too large for the trainer."""

import io
import json

import numpy as np
import pytest

from lnn_cli.datafiles import data_in_parts
from lnn_core.aws.ports import STORE_CACHE_BYTES
from lnn_core.handlers import build_launcher, build_trainer
from lnn_core.ml import batching, metrics, shards, training
from tests.conftest import FakeClock, QueueInvoker, blobs
from tests.integration.test_launch_guards import assert_rejected_creating_nothing

PARAMETERS = {
    "epochs": 3,
    "learning_rate": 0.05,
    "neurons": [4, 1],
    "activations": ["tanh", "sigmoid"],
    "seed": 5,
    "batch_size": 8,
    "optimizer": "adam",
    "l2": 0.01,
    "workers": 3,
    "granularity": "epoch",
    "data": "runs/r1/data/",
}


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def upload_parts(aws, run_id, parts, **arrays):
    """Split a data file as `lnn start --workers K` does, and upload its parts."""
    files = data_in_parts(npz(**arrays), parts)
    for name, body in files.items():
        aws.s3.put_object(Bucket=aws.bucket, Key=f"runs/{run_id}/data/{name}", Body=body)
    return files


def launch(aws, queue, clock, parameters=PARAMETERS, run_id="r1"):
    launcher = build_launcher(session=aws.session, invoker=queue, clock=clock)
    return launcher.handle({"run_id": run_id, "parameters": parameters}), launcher


def drain(trainer, queue):
    while queue.events:
        trainer.handle(queue.events.popleft())


def reference(X, y, parameters, parts):
    options = {k: parameters[k] for k in ("batch_size", "optimizer", "l2", "workers") if k in parameters}
    return training.train_reference(
        X,
        y,
        neurons=parameters["neurons"],
        activations=parameters["activations"],
        learning_rate=parameters["learning_rate"],
        epochs=parameters["epochs"],
        seed=parameters["seed"],
        parts=parts,
        **options,
    )


def model(aws, run_id="r1"):
    with np.load(
        io.BytesIO(aws.s3.get_object(Bucket=aws.bucket, Key=f"runs/{run_id}/model.npz")["Body"].read())
    ) as npz_file:
        return {name: npz_file[name] for name in npz_file.files}


def run_to_the_end(aws, parameters, run_id="r1"):
    queue, clock = QueueInvoker(), FakeClock()
    answer, _ = launch(aws, queue, clock, parameters, run_id)
    assert answer["status"] == "running", answer
    trainer = build_trainer(session=aws.session, invoker=queue, clock=clock)
    drain(trainer, queue)
    run = trainer.ports.table.get_run(run_id)
    assert run["status"] == "succeeded", run.get("reason")
    return trainer, run


@pytest.mark.parametrize("change", [{}, {"batch_size": None}, {"batch_size": 3, "epochs": 1, "granularity": "auto"}])
def test_a_run_on_data_in_parts_equals_the_reference_bit_for_bit(aws, change):
    parameters = {**PARAMETERS, **change}
    X, y = blobs(40)
    X_test, y_test = blobs(12, seed=1)
    upload_parts(aws, "r1", 3, X=X, y=y, X_test=X_test, y_test=y_test, classes=np.array(["left", "right"]))
    trainer, run = run_to_the_end(aws, {**parameters, "eval_every": 1})
    assert run["part_examples"] == [14, 13, 13] and run["examples"] == 40 and len(run["part_etags"]) == 3
    params, costs = reference(X, y, parameters, [14, 13, 13])
    if parameters["batch_size"] == 3:  # some shard of some round takes no example of its batch
        bounds = shards.part_bounds([14, 13, 13])
        assert any(
            shards.batch_examples(shards.part_batch(batch, rows), 14) == 0
            for batch in batching.minibatches(40, 3, 5, 1)
            for rows in bounds
        )
    stored = model(aws)
    assert all(stored[name].tobytes() == params[name].tobytes() for name in params)
    items = trainer.ports.table.committed_epochs(run)
    assert [item["cost"] for item in items] == costs
    assert [item["test_accuracy"] for item in items][-1] == metrics.accuracy(
        params, X_test, y_test, parameters["activations"]
    )
    final = run["final"]
    assert final["train_accuracy"] == metrics.accuracy(params, X, y, parameters["activations"])
    assert final["test_accuracy"] == metrics.accuracy(params, X_test, y_test, parameters["activations"])
    assert list(stored["classes"]) == ["left", "right"]
    assert [json.loads(m["Body"])["status"] for m in aws.messages()] == ["succeeded"]


def test_parts_differ_from_one_file_only_in_how_a_batch_is_grouped(aws):
    """The mini-batches of data in parts are those of the one file: same examples, same order; only the shards'
    grouping of each batch's sum differs, so the costs agree closely but not to the bit."""
    X, y = blobs(40)
    with_parts = reference(X, y, PARAMETERS, [14, 13, 13])[1]
    one_file = reference(X, y, PARAMETERS, None)[1]
    assert np.allclose(with_parts, one_file, rtol=1e-12) and with_parts != one_file


def test_data_refused_at_one_worker_for_memory_trains_at_four_on_the_same_memory_size(aws, monkeypatch):
    monkeypatch.setenv("LNN_TRAINER_MEMORY_MB", "160")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "160")
    X, y = blobs(8000, features=100)
    aws.upload_data("runs/whole/data.npz", X=X, y=y)
    one = {**PARAMETERS, "epochs": 2, "batch_size": 2000, "workers": 1, "granularity": "epoch"}
    one.pop("data")
    queue, clock = QueueInvoker(), FakeClock()
    answer, launcher = launch(aws, queue, clock, one, "whole")
    assert_rejected_creating_nothing(aws, answer, launcher, queue, "whole", "needs about", "but the trainer has 160 MB")
    upload_parts(aws, "four", 4, X=X, y=y)
    four = {**one, "workers": 4, "data": "runs/four/data/"}
    trainer, run = run_to_the_end(aws, four, "four")
    params, costs = reference(X, y, four, [2000] * 4)
    assert [item["cost"] for item in trainer.ports.table.committed_epochs(run)] == costs
    assert all(model(aws, "four")[name].tobytes() == params[name].tobytes() for name in params)


def rejected(aws, parameters=PARAMETERS, run_id="r1"):
    queue, clock = QueueInvoker(), FakeClock()
    answer, launcher = launch(aws, queue, clock, parameters, run_id)
    return answer, launcher, queue


def test_a_missing_part_is_refused_creating_nothing(aws):
    X, y = blobs(40)
    upload_parts(aws, "r1", 3, X=X, y=y)
    aws.s3.delete_object(Bucket=aws.bucket, Key="runs/r1/data/part-1-of-3.npz")
    answer, launcher, queue = rejected(aws)
    assert_rejected_creating_nothing(
        aws, answer, launcher, queue, "r1", "runs/r1/data/ lacks part-1-of-3.npz (1 of its 4 files missing)"
    )


def test_a_missing_common_file_is_refused(aws):
    X, y = blobs(40)
    upload_parts(aws, "r1", 3, X=X, y=y)
    aws.s3.delete_object(Bucket=aws.bucket, Key="runs/r1/data/common.npz")
    answer, launcher, queue = rejected(aws)
    assert_rejected_creating_nothing(aws, answer, launcher, queue, "r1", "lacks common.npz")


def test_parts_of_another_k_than_workers_are_refused(aws):
    X, y = blobs(40)
    upload_parts(aws, "r1", 2, X=X, y=y)
    answer, launcher, queue = rejected(aws)
    assert_rejected_creating_nothing(
        aws,
        answer,
        launcher,
        queue,
        "r1",
        "is in parts of 2 (part-0-of-2.npz ...) but the "
        "run has workers 3; run with workers 2, or split the data into 3 parts",
    )


@pytest.mark.parametrize(
    "part_1, fragment",
    [
        ({"X": np.zeros((13, 5)), "y": np.zeros(13)}, "do not match part 0's X (14, 4)"),
        ({"X": np.zeros((13, 4)), "y": np.zeros(12)}, "X has 13 examples but y has shape (12,)"),
        ({"X": np.zeros((13, 4)), "y": np.zeros(13), "X_test": np.zeros((2, 4))}, "a part holds only X and y"),
        ({"X": np.zeros((13, 4)), "y": np.zeros((13, 2))}, "one class label per example for a sigmoid output"),
        ({"X": np.zeros((13, 4), dtype=np.complex128), "y": np.zeros(13)}, "X must be numeric"),
    ],
)
def test_a_part_of_mismatched_shapes_is_refused_by_its_headers(aws, part_1, fragment):
    X, y = blobs(40)
    upload_parts(aws, "r1", 3, X=X, y=y)
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/r1/data/part-1-of-3.npz", Body=npz(**part_1))
    answer, launcher, queue = rejected(aws)
    assert_rejected_creating_nothing(aws, answer, launcher, queue, "r1", "runs/r1/data/part-1-of-3.npz", fragment)


def test_the_launcher_reads_parts_by_their_headers_only(aws):
    X, y = blobs(4000, features=50)
    upload_parts(aws, "r1", 3, X=X, y=y)
    queue, clock = QueueInvoker(), FakeClock()
    launcher = build_launcher(session=aws.session, invoker=queue, clock=clock)
    read = launcher.ports.counter
    answer = launcher.handle({"run_id": "r1", "parameters": PARAMETERS})
    assert answer["status"] == "running", answer
    assert read.s3_bytes_in < 3 * 64 * 1024 * 4 < 3 * X.nbytes / 3  # a few ranged reads per part, not the parts


def test_a_test_set_of_other_features_in_common_is_refused(aws):
    X, y = blobs(40)
    upload_parts(aws, "r1", 3, X=X, y=y)
    aws.s3.put_object(
        Bucket=aws.bucket, Key="runs/r1/data/common.npz", Body=npz(X_test=np.zeros((2, 5)), y_test=np.zeros(2))
    )
    answer, launcher, queue = rejected(aws)
    assert_rejected_creating_nothing(aws, answer, launcher, queue, "r1", "X_test has 5 features but the parts' X 4")


def test_data_in_parts_needs_workers(aws):
    answer, launcher, queue = rejected(aws, {**PARAMETERS, "workers": 1})
    assert_rejected_creating_nothing(
        aws, answer, launcher, queue, "r1", "data in parts (runs/r1/data/) needs workers 2 or more"
    )


def test_a_part_changed_after_launch_fails_the_run_with_the_reason(aws):
    X, y = blobs(40)
    upload_parts(aws, "r1", 3, X=X, y=y)
    queue, clock = QueueInvoker(), FakeClock()
    assert launch(aws, queue, clock)[0]["status"] == "running"
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/r1/data/part-2-of-3.npz", Body=npz(X=X[:13], y=y[:13]))
    trainer = build_trainer(session=aws.session, invoker=queue, clock=clock)
    drain(trainer, queue)
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "failed" and "part-2-of-3.npz changed during the run" in run["reason"]


def test_a_repeated_launch_is_recognised_and_one_on_a_replaced_part_is_refused(aws):
    X, y = blobs(40)
    upload_parts(aws, "r1", 3, X=X, y=y)
    queue, clock = QueueInvoker(), FakeClock()
    assert launch(aws, queue, clock)[0]["status"] == "running"
    assert launch(aws, queue, clock)[0] == {"run_id": "r1", "status": "running", "duplicate": True}
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/r1/data/part-2-of-3.npz", Body=npz(X=X[:13], y=y[:13]))
    answer = launch(aws, queue, clock)[0]
    assert answer["status"] == "rejected" and "created from other data" in answer["reason"]


def test_data_in_parts_must_be_the_runs_data_folder(aws):
    answer, launcher, queue = rejected(aws, {**PARAMETERS, "data": "runs/r1/"})
    assert_rejected_creating_nothing(
        aws, answer, launcher, queue, "r1", "data in parts must be the folder runs/r1/data/"
    )


def test_lnn_starts_upload_puts_the_parts_and_parameters_json_naming_their_folder(aws):
    from types import SimpleNamespace

    from lnn_cli.cloud.local import upload_run_inputs
    from tests.integration.test_launch_guards import upload_event

    X, y = blobs(40)
    data = npz(X=X, y=y)
    parameters = {key: value for key, value in PARAMETERS.items() if key != "data"}
    sent = upload_run_inputs(
        aws.session, SimpleNamespace(bucket=aws.bucket), "up", data, parameters, parts=data_in_parts(data, 3)
    )
    assert sent["data"] == "runs/up/data/"
    keys = {item["Key"] for item in aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="runs/up/")["Contents"]}
    assert keys == {
        "runs/up/parameters.json",
        "runs/up/data/common.npz",
        *(f"runs/up/data/part-{k}-of-3.npz" for k in range(3)),
    }
    launcher = build_launcher(session=aws.session, invoker=QueueInvoker(), clock=FakeClock())
    assert launcher.handle(upload_event("runs/up/parameters.json"))["status"] == "running"
    assert launcher.ports.table.get_run("up")["part_examples"] == [14, 13, 13]


def test_the_launchers_check_of_parts_follows_the_runs_dtype(aws, monkeypatch):
    """Parts of a float32 run are estimated in float32: a memory size between the two estimates refuses the
    float64 run and trains the float32 one (the check had counted every part in float64)."""
    from lnn_core.aws.usage import MIB
    from lnn_core.launch.budget import estimate_step_memory

    X, y = blobs(8000, features=1000)
    parameters = {**PARAMETERS, "epochs": 1, "batch_size": None, "optimizer": "gd", "workers": 4}
    kept = 8000 * (2 + 2 * 1 + 1) * 8  # what a part's worker keeps of the whole set (check_part_fits)
    needed = {
        itemsize: estimate_step_memory(2000, 1000, [4, 1], optimizer_copies=8, itemsize=itemsize).total + kept
        for itemsize in (8, 4)
    }
    memory_mb = needed[4] // MIB + 1
    assert needed[8] > memory_mb * MIB
    monkeypatch.setenv("LNN_TRAINER_MEMORY_MB", str(memory_mb))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", str(memory_mb))
    upload_parts(aws, "r1", 4, X=X, y=y)
    answer, launcher, queue = rejected(aws, parameters)
    assert_rejected_creating_nothing(aws, answer, launcher, queue, "r1", "needs about", f"has {memory_mb} MB")
    upload_parts(aws, "r2", 4, X=X, y=y)
    _, run = run_to_the_end(aws, {**parameters, "dtype": "float32", "data": "runs/r2/data/"}, "r2")
    assert run["status"] == "succeeded"


@pytest.mark.parametrize("workers", [1, 4])
def test_the_capacity_figure_is_where_the_launcher_starts_refusing(aws, monkeypatch, workers):
    """`bench.capacity`'s largest data set is admitted by the real launcher and one example more is refused."""
    from lnn_cli.bench.capacity import largest_examples
    from lnn_core.ml.config import TrainingConfig

    monkeypatch.setenv("LNN_TRAINER_MEMORY_MB", "160")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "160")
    parameters = {
        **PARAMETERS,
        "neurons": [4, 3],
        "activations": ["relu", "softmax"],
        "batch_size": None,
        "optimizer": "gd",
        "workers": workers,
    }
    if workers == 1:
        parameters.pop("data")
    most = largest_examples(100, TrainingConfig.from_parameters({**parameters, "data": "runs/r/data.npz"}), 160)
    assert 1000 < most < 10**6
    rng = np.random.default_rng(0)
    for run_id, examples, admitted in (("fits", most, True), ("over", most + 1, False)):
        X = rng.integers(0, 256, size=(examples, 100), dtype=np.uint8)
        y = (np.arange(examples) % 3).astype(np.uint8)
        if workers == 1:
            aws.s3.put_object(Bucket=aws.bucket, Key=f"runs/{run_id}/data.npz", Body=npz(X=X, y=y))
            run_parameters = parameters
        else:
            upload_parts(aws, run_id, workers, X=X, y=y)
            run_parameters = {**parameters, "data": f"runs/{run_id}/data/"}
        answer, launcher, queue = rejected(aws, run_parameters, run_id)
        if admitted:
            assert answer["status"] == "running", answer
        else:
            assert_rejected_creating_nothing(aws, answer, launcher, queue, run_id, "needs about", "160 MB")


def part_loads_of_a_run_in_one_container(aws, monkeypatch, *, room_for_parts: bool) -> tuple[list[str], int]:
    """A K = 2 run on data in parts whose every delivery runs in one container (shards 0 and 1 in turn, as Lambda
    may route them): the part keys it GETs, and its shard deliveries. Its memory leaves room for the other part
    beside what a worker holds for its part and its store's cache (`room_for_parts`), or for less than one part."""
    X, y = blobs(4000, features=200)
    upload_parts(aws, "r1", 2, X=X, y=y)
    parameters = {**PARAMETERS, "workers": 2, "epochs": 3, "batch_size": None}
    queue, clock = QueueInvoker(), FakeClock()
    answer, launcher = launch(aws, queue, clock, parameters)
    assert answer["status"] == "running", answer
    worker_bytes = launcher.ports.table.get_run("r1")["part_worker_bytes"] + STORE_CACHE_BYTES
    part_bytes = 2 * X[:2000].astype(np.float64).nbytes  # as rows and as columns
    spare = 2 * part_bytes if room_for_parts else part_bytes // 4
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", str(-(-(worker_bytes + spare) // 2**20)))
    trainer = build_trainer(session=aws.session, invoker=queue, clock=clock)
    loaded, get_bytes = [], trainer.ports.store.get_bytes
    trainer.ports.store.get_bytes = lambda key, **options: (loaded.append(key), get_bytes(key, **options))[1]
    shards = 0
    while queue.events:
        event = queue.events.popleft()
        shards += event.get("state") == "shard"
        trainer.handle(event)
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded", run.get("reason")
    params, costs = reference(X, y, parameters, [2000, 2000])
    assert [item["cost"] for item in trainer.ports.table.committed_epochs(run)] == costs
    return [key for key in loaded if "/data/part-" in key], shards


def test_a_container_keeps_the_other_part_when_its_memory_has_room_for_it(aws, monkeypatch):
    loaded, shards = part_loads_of_a_run_in_one_container(aws, monkeypatch, room_for_parts=True)
    assert shards == 6 and loaded == ["runs/r1/data/part-0-of-2.npz", "runs/r1/data/part-1-of-2.npz"]  # once each


def test_a_container_keeps_one_part_when_its_memory_has_no_room_for_another(aws, monkeypatch):
    loaded, shards = part_loads_of_a_run_in_one_container(aws, monkeypatch, room_for_parts=False)
    parts = ["runs/r1/data/part-0-of-2.npz", "runs/r1/data/part-1-of-2.npz"]
    # every shard's part but one, and one of the finish's two fits: the other part (or the commit's common arrays)
    # evicted it; round 3's first shard and the first fit are those of the shard that committed the round before
    # (its own event is sent first), its part still there
    p0, p1 = parts
    assert shards == 6 and loaded == [p0, p1, p1, p0, p1, p0]
