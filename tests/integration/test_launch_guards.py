"""The launcher's guard rails on moto: each refusal is one clear reason, and nothing is created (no record, no
invoke)."""

import json

import numpy as np
import pytest

from lnn_core.handlers import build_launcher
from tests.conftest import QueueInvoker, blobs
from tests.support.arrays import lying_npz, npz_bytes, zip_bomb
from tests.support.uploads import upload_event, upload_parameters, upload_run

PARAMETERS = {"epochs": 3, "learning_rate": 0.5, "neurons": [3, 1], "activations": ["tanh", "sigmoid"], "seed": 1}


def launch(aws, run_id, parameters=PARAMETERS, queue=None):
    queue = queue if queue is not None else QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    return launcher.handle({"run_id": run_id, "parameters": parameters}), launcher, queue


def assert_rejected_creating_nothing(aws, answer, launcher, queue, run_id, *fragments):
    assert answer["status"] == "rejected", answer
    for fragment in fragments:
        assert fragment in answer["reason"], answer["reason"]
    assert launcher.ports.table.get_run(run_id) is None
    assert not queue.events


def test_a_lying_header_is_rejected(aws):
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/liar/data.npz", Body=lying_npz())
    answer, launcher, queue = launch(aws, "liar")
    assert_rejected_creating_nothing(
        aws, answer, launcher, queue, "liar", "header of X declares shape (1048576, 1048576)"
    )


def test_a_zip_bomb_is_rejected_before_it_is_inflated(aws, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/bomb/data.npz", Body=zip_bomb(4000, 2500))
    answer, launcher, queue = launch(aws, "bomb")
    assert_rejected_creating_nothing(
        aws, answer, launcher, queue, "bomb", "needs about", "to load", "with 128 MB of memory"
    )


def test_data_larger_than_the_launcher_may_download_is_rejected_unread(aws, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1")  # half a MB for data
    X, y = blobs(m=20_000, features=8)
    aws.upload_data("runs/big/data.npz", X=X, y=y)
    queue = QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    launcher.ports.store.get_bytes = lambda *args, **kwargs: pytest.fail("the data was downloaded")
    answer = launcher.handle({"run_id": "big", "parameters": PARAMETERS})
    assert_rejected_creating_nothing(
        aws,
        answer,
        launcher,
        queue,
        "big",
        "training data s3://lnn-test-bucket/runs/big/data.npz is",
        "bytes, more than the 524,288 allowed",
    )


def test_a_run_too_large_for_the_trainer_names_the_memory_size_it_needs(aws, monkeypatch):
    monkeypatch.setenv("LNN_TRAINER_MEMORY_MB", "160")
    X, y = blobs(m=4000, features=20)
    aws.upload_data("runs/wide/data.npz", X=X, y=y)
    answer, launcher, queue = launch(
        aws, "wide", {**PARAMETERS, "neurons": [512, 1], "activations": ["relu", "sigmoid"]}
    )
    assert_rejected_creating_nothing(
        aws,
        answer,
        launcher,
        queue,
        "wide",
        "4,000 x 20 examples with network 20-512-1",
        "needs about 215 MB but the trainer has 160 MB; deploy with -c memory_size=256",
    )
    assert launch(aws, "wide", PARAMETERS)[0]["status"] == "running"  # a small network fits the same trainer


def test_more_workers_than_the_trainer_may_run_at_once_are_refused(aws, monkeypatch):
    monkeypatch.setenv("LNN_TRAINER_RESERVED_CONCURRENCY", "3")
    X, y = blobs()
    aws.upload_data("runs/wide-round/data.npz", X=X, y=y)
    rounds = {**PARAMETERS, "granularity": "epoch"}
    answer, launcher, queue = launch(aws, "wide-round", {**rounds, "workers": 4})
    assert_rejected_creating_nothing(
        aws,
        answer,
        launcher,
        queue,
        "wide-round",
        "workers 4 is more than the trainer's reserved concurrency of 3",
        "use at most 3 workers, or deploy with -c reserved_concurrency=4 or more",
    )
    assert launch(aws, "wide-round", {**rounds, "workers": 3})[0]["status"] == "running"
    monkeypatch.setenv(
        "LNN_TRAINER_RESERVED_CONCURRENCY", "2"
    )  # lowered since: the run's repeated launch is recognised
    assert launch(aws, "wide-round", {**rounds, "workers": 3})[0] == {
        "run_id": "wide-round",
        "status": "running",
        "duplicate": True,
    }


def test_a_memory_error_while_loading_is_a_rejection(aws, monkeypatch):
    X, y = blobs()
    aws.upload_data("runs/oom/data.npz", X=X, y=y)

    def out_of_memory(*args, **kwargs):
        return np.empty((2**20, 2**20))  # 8 TiB: numpy's own _ArrayMemoryError, as a lying header raised it

    monkeypatch.setattr("lnn_core.launch.launcher.load_training_data", out_of_memory)
    answer, launcher, queue = launch(aws, "oom")
    assert_rejected_creating_nothing(aws, answer, launcher, queue, "oom", "ran out of its 1024 MB")


def test_the_running_runs_limit(aws, monkeypatch):
    monkeypatch.setenv("LNN_MAX_RUNNING_RUNS", "2")
    X, y = blobs()
    for run_id in ("r1", "r2", "r3"):
        aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
    queue = QueueInvoker()
    assert launch(aws, "r1", queue=queue)[0]["status"] == "running"
    assert launch(aws, "r2", queue=queue)[0]["status"] == "running"
    answer, launcher, _ = launch(aws, "r3", queue=queue)
    assert answer["status"] == "rejected"
    assert answer["reason"] == (
        "2 runs are already running, the limit (LNN_MAX_RUNNING_RUNS) is 2; "
        "wait for one to end or stop one with `lnn stop RUN_ID`, then launch again"
    )
    assert launcher.ports.table.get_run("r3") is None and len(queue.events) == 2
    assert launch(aws, "r1", queue=queue)[0]["duplicate"] is True  # a repeated launch is not a new run
    # an upload is told the same, in its rejection message
    assert launcher.handle(upload_event(upload_parameters(aws, "r3", PARAMETERS)))["status"] == "rejected"
    (message,) = aws.messages()
    assert "LNN_MAX_RUNNING_RUNS" in json.loads(message["Body"])["reason"]
    # once a run is no longer running there is room again
    launcher.ports.table.request_stop("r1", token="test")
    launcher.ports.table._table.update_item(
        Key={"run_id": "r1", "epoch": 0},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "stopped"},
    )
    assert launch(aws, "r3", queue=queue)[0]["status"] == "running"


def test_parameters_json_over_64_kb_is_rejected_unread(aws):
    big = {**PARAMETERS, "padding": "x" * 70_000}
    key = upload_parameters(aws, "fat", big)
    queue = QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    launcher.ports.store.get_bytes = lambda *args, **kwargs: pytest.fail("parameters.json was downloaded")
    answer = launcher.handle(upload_event(key))
    assert (
        answer["status"] == "rejected"
        and "is 70,1" in answer["reason"]
        and "more than the 65,536 allowed" in answer["reason"]
    )
    assert len(aws.messages()) == 1 and not queue.events
    direct = launcher.handle({"run_id": "fat", "parameters": big})
    assert direct["status"] == "rejected" and "more than the 65,536 allowed" in direct["reason"]


@pytest.mark.parametrize("run_id", ["r1\n", "r1\r\n", "..", "a" * 65])
def test_run_ids_are_matched_whole(aws, run_id):
    X, y = blobs()
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    answer, launcher, queue = launch(aws, run_id, {**PARAMETERS, "data": "runs/r1/data.npz"})
    assert answer["status"] == "rejected" and "is invalid" in answer["reason"] and not queue.events


@pytest.mark.parametrize("data", ["runs/r1/../r2/data.npz", "runs/r1/./data.npz", "runs/r1//data.npz"])
def test_data_keys_with_dot_or_empty_segments_are_rejected(aws, data):
    X, y = blobs()
    aws.upload_data(data, X=X, y=y)
    answer, launcher, queue = launch(aws, "r1", {**PARAMETERS, "data": data})
    assert_rejected_creating_nothing(aws, answer, launcher, queue, "r1", "path segment")


@pytest.mark.parametrize("key", ["runs/./parameters.json", "runs/../parameters.json", "runs//parameters.json"])
def test_uploaded_keys_with_dot_or_empty_segments_are_rejected(aws, key):
    queue = QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    answer = launcher.handle(upload_event(key))
    assert answer["status"] == "rejected" and "path segment" in answer["reason"] and not queue.events


def test_the_uploader_is_recorded(aws):
    key = upload_run(aws, "up", PARAMETERS)
    queue = QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    event = upload_event(key, requester="123456789012", **{"source-ip-address": "198.51.100.7"})
    assert launcher.handle(event)["status"] == "running"
    run = launcher.ports.table.get_run("up")
    assert run["uploaded_by"] == "123456789012" and run["source_ip"] == "198.51.100.7"
    X, y = blobs()
    aws.upload_data("runs/direct/data.npz", X=X, y=y)
    assert launcher.handle({"run_id": "direct", "parameters": PARAMETERS})["status"] == "running"
    direct = launcher.ports.table.get_run("direct")
    assert direct["uploaded_by"] is None and direct["source_ip"] is None


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b'{"epochs": ' + b"9" * 5000 + b"}", "not valid JSON"),  # an integer too long to parse
        (b"[" * 20_000, "not valid JSON"),  # nesting too deep
    ],
)
def test_hostile_parameters_files_are_rejected_with_a_reason(aws, body, fragment):
    X, y = blobs()
    aws.upload_data("runs/hostile/data.npz", X=X, y=y)
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/hostile/parameters.json", Body=body)
    queue = QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    answer = launcher.handle(upload_event("runs/hostile/parameters.json"))
    assert_rejected_creating_nothing(aws, answer, launcher, queue, "hostile", fragment)


def test_a_seed_too_long_to_print_is_rejected_with_a_reason(aws):
    X, y = blobs()
    aws.upload_data("runs/long-seed/data.npz", X=X, y=y)
    answer, launcher, queue = launch(aws, "long-seed", {**PARAMETERS, "seed": 10**5000})
    assert_rejected_creating_nothing(aws, answer, launcher, queue, "long-seed", "cannot be read as LNN parameters")


@pytest.mark.parametrize("flag_bits, fragment", [(0x1, "encrypted"), (None, "compression")])
def test_npz_members_encrypted_or_with_an_unknown_compression_are_rejected(aws, flag_bits, fragment):
    X, y = blobs()
    raw = bytearray(npz_bytes(X=X, y=y))
    for offset in (i for i in range(len(raw) - 4) if raw[i : i + 4] in (b"PK\x03\x04", b"PK\x01\x02")):
        flags_at = offset + (
            6 if raw[offset + 2] == 3 else 8
        )  # general purpose flags (local header / central directory)
        if flag_bits is not None:
            raw[flags_at] |= flag_bits
        else:
            raw[flags_at + 2] = 99  # the compression method that follows the flags
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/odd-zip/data.npz", Body=bytes(raw))
    answer, launcher, queue = launch(aws, "odd-zip")
    assert_rejected_creating_nothing(aws, answer, launcher, queue, "odd-zip", "not a readable .npz")


def test_more_workers_than_the_smallest_batch_has_examples_is_refused(aws):
    X, y = blobs(50)
    aws.upload_data("runs/wide/data.npz", X=X, y=y)
    answer, launcher, queue = launch(
        aws, "wide", {**PARAMETERS, "batch_size": 16, "workers": 3, "granularity": "epoch"}
    )
    assert_rejected_creating_nothing(aws, answer, launcher, queue, "wide", "workers 3 is more than the 2 examples")
