"""The training state of a K > 1 run in K slices (`protocol/round_steps.py`): what is kept whole, what is deleted
when, and a run that an earlier LNN started, whose state is one file."""

import io

import numpy as np

from lnn_core.handlers import build_launcher, build_trainer
from lnn_core.ml import training
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol.layout import STATE_SLICES_FIELD, params_key
from tests.conftest import FakeClock, QueueInvoker, blobs

PARAMETERS = {
    "epochs": 4,
    "learning_rate": 0.05,
    "neurons": [5, 1],
    "activations": ["tanh", "sigmoid"],
    "seed": 3,
    "batch_size": 16,
    "optimizer": "adam",
    "workers": 3,
    "granularity": "epoch",
    "reduce": "slices",
    "data": "runs/r1/data.npz",
}


def start(aws, parameters=PARAMETERS):
    X, y = blobs(40)
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    queue, clock = QueueInvoker(), FakeClock()
    answer = build_launcher(session=aws.session, invoker=queue, clock=clock).handle(
        {"run_id": "r1", "parameters": parameters}
    )
    assert answer["status"] == "running", answer
    return X, y, queue, build_trainer(session=aws.session, invoker=queue, clock=clock)


def drain(trainer, queue):
    while queue.events:
        trainer.handle(queue.events.popleft())


def state_keys(aws):
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="runs/r1/state/")
    return sorted(item["Key"] for item in listed.get("Contents", []))


def stored(aws, key):
    with np.load(io.BytesIO(aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read())) as npz:
        return {name: npz[name] for name in npz.files}


def test_a_run_keeps_its_last_epoch_whole_and_deletes_every_slice_and_sum_it_no_longer_reads(aws):
    X, y, queue, trainer = start(aws)
    drain(trainer, queue)
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded", run.get("reason")
    config = TrainingConfig.from_parameters(PARAMETERS)
    last = params_key(config, 4)
    # what stays: the last epoch whole (kept: the epoch item points at it) and the staged model; the finish
    # deleted the last epoch's slices, every commit the sums and slices nothing reads any more
    assert [key for key in state_keys(aws) if "staged-model" not in key] == [last]
    params, costs = training.train_reference(
        X,
        y,
        neurons=PARAMETERS["neurons"],
        activations=PARAMETERS["activations"],
        learning_rate=PARAMETERS["learning_rate"],
        epochs=4,
        seed=3,
        batch_size=16,
        optimizer="adam",
        workers=3,
    )
    whole = stored(aws, last)
    assert all(whole[name].tobytes() == params[name].tobytes() for name in params)
    assert int(whole["t"]) == 4 * 3  # adam's steps: 3 batches an epoch, the optimizer state assembled whole
    assert [item["cost"] for item in trainer.ports.table.committed_epochs(run)] == costs
    tagging = aws.s3.get_object_tagging(Bucket=aws.bucket, Key=last)["TagSet"]
    assert tagging == []  # kept, not scratch


def test_an_early_stop_keeps_its_epoch_whole_for_the_finish(aws):
    X, y, queue, trainer = start(aws, {**PARAMETERS, "threshold": 10.0})  # the first epoch's cost is below it
    drain(trainer, queue)
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded" and run["final"]["stopped_early_at"] == 1, run
    config = TrainingConfig.from_parameters({**PARAMETERS, "threshold": 10.0})
    assert aws.s3.get_object_tagging(Bucket=aws.bucket, Key=params_key(config, 1))["TagSet"] == []
    (item,) = trainer.ports.table.committed_epochs(run)
    assert item.get("checkpoint_key") in (None, params_key(config, 1))


def test_a_round_of_a_run_an_earlier_lnn_started_fails_it_with_the_reason(aws):
    _, _, queue, trainer = start(aws)
    trainer.ports.table._table.update_item(  # as an earlier LNN's launcher wrote it
        Key={"run_id": "r1", "epoch": 0}, UpdateExpression=f"REMOVE {STATE_SLICES_FIELD}"
    )
    drain(trainer, queue)
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "failed"
    assert "started by an earlier LNN" in run["reason"] and "start the run again" in run["reason"]
