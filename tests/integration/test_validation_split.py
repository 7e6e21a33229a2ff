"""validation_split: the same rows held out for every training seed, the rest trained on bit for bit as the plain
loop does, the held-out rows evaluated every eval_every epochs and at the end, the test set untouched until then."""

import numpy as np
import pytest

from lnn_core.errors import LnnInputError
from lnn_core.handlers import build_launcher
from lnn_core.ml import metrics, training
from lnn_core.ml.validation import split_indices
from tests.conftest import QueueInvoker, blobs
from tests.integration.test_minibatch_training import BASE, reference, same, stored, train, upload

EXAMPLES = 50


def test_the_split_depends_on_its_own_seed_only_and_keeps_the_order():
    training, validation = split_indices(EXAMPLES, 0.2, 0)
    assert len(validation) == 10 and len(training) == 40
    assert sorted([*training, *validation]) == list(range(EXAMPLES))
    assert list(training) == sorted(training) and list(validation) == sorted(validation)
    again = split_indices(EXAMPLES, 0.2, 0)
    assert [list(part) for part in again] == [list(training), list(validation)]
    assert list(split_indices(EXAMPLES, 0.2, 1)[1]) != list(validation)
    assert list(split_indices(EXAMPLES, 0.0, 0)[0]) == list(range(EXAMPLES))
    assert len(split_indices(EXAMPLES, 0.001, 0)[1]) == 1  # any fraction above 0 holds out a row


def test_a_split_that_leaves_nothing_to_train_on_is_refused():
    assert len(split_indices(EXAMPLES, 0.99, 0)[0]) == 1
    with pytest.raises(LnnInputError, match="validation_split 0.5 holds out all 1 training examples; use a smaller"):
        split_indices(1, 0.5, 0)


# layer granularity in make slow (6-10 s)
@pytest.mark.parametrize("granularity", [pytest.param("layer", marks=pytest.mark.slow), "epoch"])
def test_trials_with_other_seeds_hold_out_the_same_rows_and_train_as_the_plain_loop(aws, granularity):
    X, y = blobs(EXAMPLES + 20)
    X_train, y_train = X[:EXAMPLES], y[:EXAMPLES]
    validation = {"validation_split": 0.2, "validation_seed": 5, "eval_every": 2}
    training_rows, held = split_indices(EXAMPLES, 0.2, 5)
    for run_id, seed in (("t1", 7), ("t2", 8)):
        upload(aws, run_id, X_train, y_train, X[EXAMPLES:], y[EXAMPLES:])
        parameters = {**BASE, **validation, "seed": seed, "granularity": granularity}
        trainer, _ = train(aws, parameters, run_id=run_id)
        run = trainer.ports.table.get_run(run_id)
        assert run["status"] == "succeeded", run.get("reason")
        assert run["examples"] == 40  # the batches of 16 are drawn from the 40 training rows
        params, costs, _ = training.train_reference_state(
            X_train,
            y_train,
            neurons=BASE["neurons"],
            activations=BASE["activations"],
            learning_rate=BASE["learning_rate"],
            epochs=BASE["epochs"],
            seed=seed,
            batch_size=BASE["batch_size"],
            validation_split=0.2,
            validation_seed=5,
        )
        assert same(stored(aws, f"runs/{run_id}/model.npz"), params)
        options = {k: parameters[k] for k in ("batch_size",)}
        unsplit = reference(X_train[training_rows], y_train[training_rows], {**BASE, "seed": seed, **options})
        assert same(params, unsplit[0])  # the reference trains on exactly the rows left
        items = trainer.ports.table.list_epochs(run_id)
        assert [item["cost"] for item in items] == costs
        assert ["validation_cost" in item for item in items] == [False, True, False, True]
        activations = BASE["activations"]
        assert items[3]["validation_accuracy"] == metrics.accuracy(params, X_train[held], y_train[held], activations)
        assert items[3]["test_accuracy"] == metrics.accuracy(params, X[EXAMPLES:], y[EXAMPLES:], activations)
        final = run["final"]
        assert final["validation_accuracy"] == items[3]["validation_accuracy"]
        assert final["validation_cost"] == items[3]["validation_cost"]
        assert final["train_accuracy"] == metrics.accuracy(
            params, X_train[training_rows], y_train[training_rows], activations
        )


def test_the_launcher_refuses_a_split_that_leaves_nothing(aws):
    X, y = blobs(1)
    upload(aws, "r1", X, y)
    answer = build_launcher(session=aws.session, invoker=QueueInvoker()).handle(
        {"run_id": "r1", "parameters": {**BASE, "validation_split": 0.5}}
    )
    assert answer["status"] == "rejected"
    assert answer["reason"].startswith("validation_split 0.5 holds out all 1 training examples")


def test_no_split_changes_nothing(aws):
    X, y = blobs(EXAMPLES)
    upload(aws, "r1", X, y)
    trainer, _ = train(aws, {**BASE, "eval_every": 2})
    run = trainer.ports.table.get_run("r1")
    assert run["examples"] == EXAMPLES and "validation_accuracy" not in run["final"]
    assert not any("validation_cost" in item for item in trainer.ports.table.list_epochs("r1"))
    assert same(stored(aws, "runs/r1/model.npz"), reference(X, y, BASE)[0])
    assert np.isfinite(run["final"]["cost"])
