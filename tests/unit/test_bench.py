"""`make bench`'s jobs and figures, without the emulator."""

import argparse
import io

import numpy as np
import pytest

from lnn_cli.bench import figures as bench_figures
from lnn_cli.bench import jobs as bench_jobs
from lnn_cli.bench import workers as bench_workers


def args(job: str) -> argparse.Namespace:
    return argparse.Namespace(
        job=job,
        epochs=3,
        layer_epochs=1,
        examples=5,
        repeats=1,
        minibatch_epochs=2,
        minibatch_layer_epochs=1,
        minibatch_examples=200,
        minibatch_repeats=3,
    )


def test_job_selection():
    assert [job.name for job in bench_jobs.make_jobs(args("all"))] == ["classic", "minibatch"]
    assert [job.name for job in bench_jobs.make_jobs(args("minibatch"))] == ["minibatch"]
    assert [job.name for job in bench_jobs.make_jobs(args("classic"))] == ["classic"]


def test_minibatch_job_is_seeded_and_is_what_plain_numpy_and_lnn_receive():
    job = bench_jobs.make_jobs(args("minibatch"))[0]
    again = bench_jobs.make_jobs(args("minibatch"))[0]
    assert job.data == again.data and job.repeats == 3
    with np.load(io.BytesIO(job.data)) as npz:
        assert npz["X"].tobytes() == job.X.tobytes() and npz["y"].tobytes() == job.y.tobytes()
    assert job.X.shape == (200, 100) and set(np.unique(job.y)) == {0.0, 1.0}
    assert job.run_parameters("layer") == {
        "neurons": [32, 16, 1],
        "activations": ["relu", "relu", "sigmoid"],
        "seed": 1,
        "learning_rate": 0.001,
        "batch_size": 64,
        "optimizer": "adam",
        "epochs": 1,
        "granularity": "layer",
    }
    seconds, costs = job.plain_numpy()
    assert seconds > 0 and len(costs) == 2 and costs[1] < costs[0]


def test_training_seconds_sums_the_epoch_items_spans():
    items = [
        {"started_at": "2026-01-01T00:00:00.100Z", "finished_at": "2026-01-01T00:00:00.350Z"},
        {"started_at": "2026-01-01T00:00:59.900Z", "finished_at": "2026-01-01T00:01:00.000Z"},
    ]
    assert abs(bench_figures.training_seconds(items) - 0.35) < 1e-6
    assert bench_figures.training_seconds([{"epoch": 1}]) is None and bench_figures.training_seconds([]) is None


def test_median_run_and_ratios():
    runs = [{"seconds": s, "epochs": 10, "training_seconds": t} for s, t in ((3.0, 1.0), (1.0, 0.8), (2.0, 0.9))]
    chosen = bench_jobs.median_run(runs)
    assert chosen["seconds"] == 2.0 and chosen["training_seconds"] == 0.9 and chosen["all_seconds"] == [3.0, 1.0, 2.0]
    rows = {"numpy": {"epochs": 10, "seconds": 0.5}, "auto": chosen}
    assert bench_jobs.auto_ratio(rows) == 4.0 and abs(bench_jobs.auto_training_ratio(rows) - 1.8) < 1e-12


def test_a_stamp_a_second_off_gives_no_figure():
    items = [{"started_at": "2026-01-01T00:00:01.999Z", "finished_at": "2026-01-01T00:00:01.002Z"}]
    assert bench_figures.training_seconds(items) is None


def test_workers_job_selection_and_data():
    assert bench_jobs.make_jobs(args("workers")) == []  # the workers job runs on an emulator of its own
    data, X, y = bench_workers.workers_data(300, features=12, classes=4)
    again, _, _ = bench_workers.workers_data(300, features=12, classes=4)
    assert data == again
    with np.load(io.BytesIO(data)) as npz:
        assert npz["X"].dtype == np.uint8 and npz["X"].shape == (300, 12)
        assert np.array_equal(npz["X"] / 255.0, X) and np.array_equal(npz["y"], y)
    assert set(np.unique(y)) == {0.0, 1.0, 2.0, 3.0}
    assert bench_workers.parameter_bytes([784, 128, 64, 10]) == 875_088  # the ~0.9 MB of gradient sums a shard PUTs


def test_epoch_intervals_and_relative_difference():
    items = [
        {"finished_at": "2026-01-01T00:00:01.000Z"},
        {"finished_at": "2026-01-01T00:00:02.500Z"},
        {"finished_at": "2026-01-01T00:00:03.250Z"},
    ]
    assert [round(s, 3) for s in bench_figures.epoch_intervals(items)] == [1.5, 0.75]
    assert bench_figures.relative_difference([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert abs(bench_figures.relative_difference([1.0, 2.000002], [1.0, 2.0]) - 1e-6) < 1e-12
    assert bench_figures.relative_difference([1.0], [1.0, 2.0]) == float("inf")


def test_delivery_summary_and_per_round():
    from types import SimpleNamespace

    def delivery(state, seconds, s3, dynamodb, out):
        return SimpleNamespace(
            role="trainer",
            error=None,
            seconds=seconds,
            result={"state": state},
            io={"requests": {"s3": s3, "dynamodb": dynamodb}, "s3_bytes_in": 0, "s3_bytes_out": out},
        )

    records = [
        delivery("start", 0.1, 1, 4, 10),
        delivery("shard", 1.0, 2, 3, 100),
        delivery("shard", 2.0, 2, 4, 100),
        delivery("slice", 0.5, 3, 5, 50),  # the slice that commits the round
        delivery("slice", 0.25, 2, 3, 40),
        delivery("finish", 0.3, 2, 6, 70),  # not a round
        SimpleNamespace(role="launcher", result={}, error=None),
    ]
    summary = bench_figures.delivery_summary(records)
    assert summary["shard"] == {
        "deliveries": 2,
        "requests": {"dynamodb": 7, "s3": 4},
        "s3_bytes_in": 0,
        "s3_bytes_out": 200,
        "data_loads": 0,
        "mean_seconds": 1.5,
    }
    assert summary["slice"] == {
        "deliveries": 2,
        "requests": {"dynamodb": 8, "s3": 5},
        "s3_bytes_in": 0,
        "s3_bytes_out": 90,
        "data_loads": 0,
        "mean_seconds": 0.375,
    }
    assert bench_figures.ROUND_STATES == ("shard", "slice") and "reduce" not in summary
    assert bench_figures.per_round(summary, 1, 2) == {  # the shards and the slices, not the start nor the finish
        "requests": {"dynamodb": 15, "s3": 9},
        "s3_bytes_in": 0,
        "s3_bytes_out": 290,
        "data_loads": 0,
    }
    assert bench_figures.per_round(summary, 2, 1) == {
        "requests": {"dynamodb": 2, "s3": 0.5},
        "s3_bytes_in": 0,
        "s3_bytes_out": 5,
        "data_loads": 0,
    }
    loading = delivery("shard", 1.0, 3, 3, 100)
    loading.io["s3_bytes_in"] = 5000 + 40  # the .npz (5,000 bytes) and the state
    summary = bench_figures.delivery_summary([loading, delivery("shard", 1.0, 2, 3, 100)], data_bytes=5000)
    assert summary["shard"]["data_loads"] == 1 and summary["shard"]["s3_bytes_in"] == 40
    assert summary["shard"]["requests"] == {"dynamodb": 6, "s3": 4}


def test_round_trips_per_round_add_the_slowest_shard_and_the_slowest_slice():
    from types import SimpleNamespace

    def delivery(state, epoch, s3, invokes, dynamodb):
        return SimpleNamespace(
            role="trainer",
            result={"state": state, "epoch": epoch, "batch": 1},
            io={"round_trips": {"s3": s3, "lambda": invokes, "dynamodb": dynamodb}},
        )

    rounds = [  # per round, the most of its shards' trips plus the most of its slices' (each count on its own)
        delivery("shard", 2, 2, 0, 5),
        delivery("shard", 2, 2, 1, 6),  # round 2's shards: (3, 6)
        delivery("slice", 2, 3, 1, 6),
        delivery("slice", 2, 2, 0, 8),  # its slices: (4, 8)
        delivery("shard", 3, 1, 1, 6),
        delivery("shard", 3, 2, 0, 5),  # round 3's shards: (2, 6)
        delivery("slice", 3, 1, 0, 4),
        delivery("slice", 3, 3, 1, 6),  # its slices: (4, 6)
        delivery("finish", 3, 3, 0, 6),
        SimpleNamespace(role="launcher", result={}, io={}),
    ]
    assert bench_figures.round_trips_per_round(rounds, 2) == {
        "rounds": 2,
        "storage_or_invoke": {"mean": 6.5, "most": 7},
        "dynamodb": {"mean": 13.0, "most": 14},
    }
    chain = [delivery("start", 2, 3, 1, 6), delivery("start", 3, 2, 1, 6)]
    assert bench_figures.round_trips_per_round(chain, 1) == {
        "rounds": 2,
        "storage_or_invoke": {"mean": 3.5, "most": 4},
        "dynamodb": {"mean": 6.0, "most": 6},
    }
    assert bench_figures.round_trips_per_round([], 2) == {"rounds": 0}


def test_committing_path_splits_the_committing_delivery_at_its_longest_stretch_without_a_request():
    from types import SimpleNamespace

    def delivery(state, outcome, seconds, spans):
        return SimpleNamespace(
            role="trainer", result={"state": state, "outcome": outcome}, seconds=seconds, spans=spans
        )

    committing = delivery(  # a read and a fence; 0.4 s of compute; a PUT of two objects at once, then two writes
        "shard",
        "committed",
        0.6,
        [  # in the trace's order: a request is recorded when it ends, so a wave's first may come last
            ("dynamodb", 0.00, 0.01, None),
            ("dynamodb", 0.01, 0.02, None),
            ("s3", 0.43, 0.455, "wave"),
            ("s3", 0.42, 0.46, "wave"),
            ("dynamodb", 0.47, 0.50, None),
            ("dynamodb", 0.50, 0.52, None),
        ],
    )
    others = [
        delivery("shard", "shard", 0.5, [("dynamodb", 0.0, 0.01, None)]),  # a shard that did not commit
        delivery("fit", "committed", 0.3, [("dynamodb", 0.0, 0.01, None)]),  # not a round
        SimpleNamespace(  # not a trainer's
            role="launcher",
            result={"state": "shard", "outcome": "committed"},
            seconds=1.0,
            spans=[("dynamodb", 0.0, 0.01, None), ("dynamodb", 0.9, 1.0, None)],
        ),
    ]
    path = bench_figures.committing_path([committing, *others], 2)
    assert path == {
        "deliveries": 1,
        "seconds": 0.6,
        "before": 0.02,
        "compute": 0.4,
        "after": 0.18,
        "after_requests": 0.09,  # 0.42-0.46 and 0.47-0.52: the wave's overlap counted once
        "after_round_trips": {"dynamodb": 2, "s3": 1},
    }
    slow = delivery(  # the compute is the longest gap, not the first
        "slice", "committed", 1.5, [("dynamodb", 0.0, 0.1, None), ("dynamodb", 0.2, 0.3, None), ("s3", 1.2, 1.3, None)]
    )
    alone = delivery("shard", "committed", 0.9, [("dynamodb", 0.0, 0.05, None)])  # one request: no compute between
    three = bench_figures.committing_path([committing, slow, alone], 2)  # the median of each figure apart
    assert three["deliveries"] == 3
    assert three["seconds"] == 0.9 and three["compute"] == 0.4 and three["before"] == 0.05
    assert three["after"] == 0.3 and three["after_round_trips"] == {"dynamodb": 0, "s3": 1}
    assert bench_figures.committing_path([alone], 2) | {"after_round_trips": None} == {
        "deliveries": 1,
        "seconds": 0.9,
        "before": 0.05,
        "compute": 0.0,
        "after": 0.85,
        "after_requests": 0.0,
        "after_round_trips": None,
    }
    chain = delivery("start", "committed", 0.6, committing.spans)  # K = 1: the epoch step
    assert bench_figures.committing_path([chain], 1)["compute"] == 0.4
    assert bench_figures.committing_path([chain], 2) == {"deliveries": 0}


def test_a_counter_gives_the_spans_of_the_requests_after_a_snapshot():
    from lnn_core.aws.sdk import IoCounter

    counter = IoCounter()
    counter.record("s3", 0.0, 1.0)
    before = counter.snapshot()
    counter.record("dynamodb", 1.0, 2.0)
    counter.record("lambda", 2.0, 2.5)
    assert counter.spans_since(before) == [("dynamodb", 1.0, 2.0, None), ("lambda", 2.0, 2.5, None)]
    assert counter.spans_since(counter.snapshot()) == []


def test_project_with_context_adds_context_to_the_projects_cdk_json(tmp_path):
    import json

    (tmp_path / "cdk.json").write_text(
        json.dumps({"app": ".venv/bin/python app.py", "context": {"cli-telemetry": False}})
    )
    (tmp_path / "node_modules").mkdir()
    with bench_workers.project_with_context({"memory_size": 1769}, project_dir=tmp_path) as project:
        settings = json.loads((project / "cdk.json").read_text())
        assert settings["context"] == {"cli-telemetry": False, "memory_size": 1769}
        assert settings["app"] == f"{tmp_path / '.venv' / 'bin' / 'python'} {tmp_path / 'app.py'}"
        assert (project / "node_modules").resolve() == tmp_path / "node_modules"
    assert not project.exists()


def test_epoch_spans():
    items = [
        {"started_at": "2026-01-01T00:00:00.100Z", "finished_at": "2026-01-01T00:00:01.350Z"},
        {"started_at": "2026-01-01T00:00:01.400Z", "finished_at": "2026-01-01T00:00:02.000Z"},
    ]
    assert [round(s, 3) for s in bench_figures.epoch_spans(items)] == [1.25, 0.6]


def test_reads_job_writes_a_demo_run_of_the_real_shape(aws):
    """bench_reads' run: the demo network's items, with weights, committed and ended as a trainer leaves them."""
    from lnn_cli.bench.reads import write_run
    from lnn_core.aws.run_table import RunTable
    from lnn_core.aws.sdk import IoCounter

    table = RunTable(aws.session.resource("dynamodb").Table("lnn-results"), IoCounter())
    run = write_run(table, "bench", 20)  # the shape of each item is the point; the reads bench writes 1,000
    assert run["status"] == "succeeded" and run["progress_epoch"] == 20
    items = table.committed_epochs(run)
    assert [item["epoch"] for item in items] == list(range(1, 21))
    assert len(items[0]["weights"]["layer1"]) == 20 and len(items[0]["weights"]["layer1"][0]) == 30
    assert "test_cost" in items[9] and "test_cost" not in items[8]


def test_a_sweeps_aws_projection_adds_its_chains_one_after_another_and_takes_the_longest_at_once():
    from lnn_cli.bench.projection import AwsAssumptions
    from lnn_cli.bench.sweep import chain_seconds, projection

    assumptions = AwsAssumptions()  # 30 ms an Invoke call, 50 ms a hop
    short = {"usage_deliveries": 10, "usage_mb_ms": 1024 * 2000}  # 2 s billed at 1,024 MB, 10 deliveries
    long = {"usage_deliveries": 5, "usage_mb_ms": 1024 * 6000}
    assert chain_seconds(short, assumptions, 1024) == pytest.approx(2.0 + 10 * 0.08)
    aws = projection([short, long], assumptions, 1024)
    assert aws["one_after_another_seconds"] == pytest.approx(2.8 + 6.4)
    assert aws["all_at_once_seconds"] == pytest.approx(6.4) and aws["trials"] == 2


def test_median_run_is_the_middle_launch_to_finish_of_the_repeats_and_keeps_them_all():
    from lnn_cli.bench.workers import median_run

    runs = [{"seconds": 9.0, "seconds_per_epoch": 0.7}, {"seconds": 8.0, "seconds_per_epoch": 0.6}]
    runs.append({"seconds": 12.0, "seconds_per_epoch": 0.9})
    assert median_run(runs) == runs[0] | {
        "repeats_seconds": [9.0, 8.0, 12.0],
        "repeats_seconds_per_epoch": [0.7, 0.6, 0.9],
    }
    assert median_run(runs[:2])["seconds"] == 8.0  # of an even count, the lower middle
