"""`make bench`'s jobs and figures, without the emulator."""

import argparse
import io

import numpy as np

from lnn_cli import bench


def args(job: str) -> argparse.Namespace:
    return argparse.Namespace(job=job, epochs=3, layer_epochs=1, examples=5, repeats=1, minibatch_epochs=2,
                              minibatch_layer_epochs=1, minibatch_examples=200, minibatch_repeats=3)


def test_job_selection():
    assert [job.name for job in bench.make_jobs(args("all"))] == ["classic", "minibatch"]
    assert [job.name for job in bench.make_jobs(args("minibatch"))] == ["minibatch"]
    assert [job.name for job in bench.make_jobs(args("classic"))] == ["classic"]


def test_minibatch_job_is_seeded_and_is_what_plain_numpy_and_lnn_receive():
    job = bench.make_jobs(args("minibatch"))[0]
    again = bench.make_jobs(args("minibatch"))[0]
    assert job.data == again.data and job.repeats == 3
    with np.load(io.BytesIO(job.data)) as npz:
        assert npz["X"].tobytes() == job.X.tobytes() and npz["y"].tobytes() == job.y.tobytes()
    assert job.X.shape == (200, 100) and set(np.unique(job.y)) == {0.0, 1.0}
    assert job.run_parameters("layer") == {"neurons": [32, 16, 1], "activations": ["relu", "relu", "sigmoid"], "seed": 1,
                                           "learning_rate": 0.001, "batch_size": 64, "optimizer": "adam",
                                           "epochs": 1, "granularity": "layer"}
    seconds, costs = job.plain_numpy()
    assert seconds > 0 and len(costs) == 2 and costs[1] < costs[0]


def test_training_seconds_sums_the_epoch_items_spans():
    items = [{"started_at": "2026-01-01T00:00:00.100Z", "finished_at": "2026-01-01T00:00:00.350Z"},
             {"started_at": "2026-01-01T00:00:59.900Z", "finished_at": "2026-01-01T00:01:00.000Z"}]
    assert abs(bench.training_seconds(items) - 0.35) < 1e-6
    assert bench.training_seconds([{"epoch": 1}]) is None and bench.training_seconds([]) is None


def test_median_run_and_ratios():
    runs = [{"seconds": s, "epochs": 10, "training_seconds": t} for s, t in ((3.0, 1.0), (1.0, 0.8), (2.0, 0.9))]
    chosen = bench.median_run(runs)
    assert chosen["seconds"] == 2.0 and chosen["training_seconds"] == 0.9 and chosen["all_seconds"] == [3.0, 1.0, 2.0]
    rows = {"numpy": {"epochs": 10, "seconds": 0.5}, "auto": chosen}
    assert bench.auto_ratio(rows) == 4.0 and abs(bench.auto_training_ratio(rows) - 1.8) < 1e-12


def test_a_stamp_a_second_off_gives_no_figure():
    items = [{"started_at": "2026-01-01T00:00:01.999Z", "finished_at": "2026-01-01T00:00:01.002Z"}]
    assert bench.training_seconds(items) is None
