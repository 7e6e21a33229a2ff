"""Issue 19's projection pieces of `make bench --job workers`: LNN's round in slices, the memory
each K needs, the chain whose state is not cached, the model's check against this machine, the emulator's
latencies and the job's options."""

import argparse

import pytest

from lnn_cli.bench import projection as bench_projection
from lnn_cli.bench import workers as bench_workers
from lnn_cli.bench.__main__ import positive_ints
from lnn_cli.bench.latency import PROBE_PREFIX, emulator_assumptions
from lnn_cli.bench.tables import model_check_line, targets_line
from lnn_cli.cloud.runtime.core import LOCAL_POLL_SECONDS

ASSUMED = bench_projection.AwsAssumptions(
    s3_latency=0.02,
    s3_put_latency=0.02,
    s3_put_seconds_per_mib=0.0,  # a PUT as a GET: L + n / B
    bandwidth=1e6,
    invoke_latency=0.03,
    hop_latency=0.05,
    dynamodb_latency=0.01,
)
G = 500_000  # 0.5 s at 1 MB/s


def built_round_parts(K, G, S, get, put, d=0.01, i=0.03, L=0.02):
    """The critical path of a round in slices (`aws_round`'s docstring), piece by piece."""
    shard = get(G) + 4.0 / K + put(G) + 6 * d + i
    sliced = get(S / K + G) + put(S / K) + 6 * d
    commit = get(G - G / K) + L + 5 * d + i  # its own new slice is in its cache
    return shard, sliced, commit


def test_the_built_round_follows_its_formula_and_moves_constant_bytes_per_function():
    four = bench_projection.aws_round(4.0, 4, G, ASSUMED)
    shard, sliced, commit = built_round_parts(4, G, G, lambda n: 0.02 + n / 1e6, lambda n: 0.02 + n / 1e6)
    assert four["seconds"] == pytest.approx(shard + sliced + commit + 2 * 0.05, abs=1e-12)
    assert four["compute"] == pytest.approx(1.0)
    lambda_cost = (4 * (shard + sliced) + commit) * 1769 / 1024 * 0.0000133334 + 8 * 0.20e-6
    assert four["cost_by_service"]["lambda"] == pytest.approx(lambda_cost, rel=1e-12)
    # 12 PUTs (two objects of sums per shard, one of state rows per slice: gd); 39 GETs (the shards' 16 state
    # slices, the slices' 16 ranges and 4 rows, the commit's other 3 slices)
    assert four["cost_by_service"]["s3"] == pytest.approx((12 * 0.005 + 39 * 0.0004) / 1000, rel=1e-12)
    assert four["cost_by_service"]["dynamodb"] == pytest.approx(40 * 0.625e-6 + 18 * 0.125e-6, rel=1e-12)
    # its communication falls towards a constant as K grows: four moves of G, whatever K
    rows = {K: bench_projection.aws_round(4.0, K, G, ASSUMED)["communication"] for K in (2, 8, 64)}
    assert rows[8] > rows[64] > 4 * (0.02 + 0.5) and rows[64] - rows[8] < 0.01


def test_a_chain_whose_state_is_not_cached_reads_it_every_step():
    cached = bench_projection.aws_round(4.0, 1, G, ASSUMED)
    uncached = bench_projection.aws_round(
        4.0, 1, G, bench_projection.AwsAssumptions(**{**ASSUMED.__dict__, "chain_state_cached": False})
    )
    assert uncached["seconds"] - cached["seconds"] == pytest.approx(0.02 + 0.5, abs=1e-12)
    assert bench_projection.aws_round(4.0, 2, G, ASSUMED, memory_mb=3538)["memory_mb"] == 3538


def test_projection_per_design_prices_each_k_at_its_memory():
    memory = {1: 4096, 2: 2048, 4: 1769}
    projection = bench_projection.aws_projection(8.0, G, (1, 2, 4), ASSUMED, memory_mb=memory, design="persistent")
    rows = {row["workers"]: row for row in projection["rows"]}
    assert projection["design"] == "persistent" and rows[1]["cost_ratio"] == 1.0
    assert {K: row["memory_mb"] for K, row in rows.items()} == memory
    assert rows[1] == bench_projection.aws_round(8.0, 1, G, ASSUMED, memory_mb=4096) | {
        "speedup": 1.0,
        "cost_ratio": 1.0,
    }
    assert rows[4]["seconds"] == bench_projection.persistent_round(8.0, 4, G, ASSUMED, memory_mb=1769)["seconds"]
    assert "K = 8" not in targets_line(projection) and "K = 16" not in targets_line(projection)
    with pytest.raises(KeyError):
        bench_projection.aws_projection(8.0, G, (1, 2), ASSUMED, design="tree")


def test_memory_by_workers_follows_the_launchers_estimate_and_one_vcpu_at_least():
    large = bench_workers.WorkersJob(neurons=(1024, 512, 10))
    memory = bench_workers.memory_by_workers(large, 784, (1, 2, 8))
    assert memory[1] > 3000 and memory[1] % 64 == 0  # the larger job's whole epoch: refused at 1,769 MB
    assert memory[8] == bench_workers.WORKERS_MEMORY_MB
    single = bench_workers.memory_by_workers(
        bench_workers.WorkersJob(neurons=(1024, 512, 10), dtype="float32"), 784, (1,)
    )
    assert single[1] < memory[1]
    assert bench_workers.parameter_bytes([784, 128, 64, 10], 4) == 875_088 // 2


def test_model_check_compares_the_local_prediction_with_the_measured_epochs():
    local = bench_projection.AwsAssumptions(
        s3_latency=0.004,
        s3_put_latency=0.006,
        s3_put_seconds_per_mib=0.002,
        bandwidth=200e6,
        invoke_latency=0.0,
        hop_latency=0.0,
        dynamodb_latency=0.003,
    )
    one = bench_projection.aws_round(1.0, 1, 875_088, local)["seconds"]
    two = bench_projection.aws_round(1.0, 2, 875_088, local, in_shard=True)["seconds"]  # as K = 2 runs reduce
    good = bench_workers.model_check(
        1.0, 875_088, local, {1: {"seconds_per_epoch": one}, 2: {"seconds_per_epoch": two}}, "auto"
    )
    assert good["within_tolerance"] and good["rows"][1]["ratio"] == pytest.approx(1.0)
    off = bench_workers.model_check(
        1.0, 875_088, local, {1: {"seconds_per_epoch": one}, 2: {"seconds_per_epoch": two / 0.7}}, "auto"
    )
    assert not off["within_tolerance"] and off["rows"][2]["ratio"] == pytest.approx(0.7)
    assert "NOT within 25%" in model_check_line(off) and "within 25%" in model_check_line(good)
    # staying workers' K = 2 by their own round: polls of the local runtime, no hand-over
    poll = local.dynamodb_latency + LOCAL_POLL_SECONDS
    staying = bench_projection.staying_round(1.0, 2, 875_088, local, poll_interval=poll, cold_start=0.0)["seconds"]
    check = bench_workers.model_check(
        1.0, 875_088, local, {1: {"seconds_per_epoch": one}, 2: {"seconds_per_epoch": staying}}, "workers"
    )
    assert check["rows"][2]["ratio"] == pytest.approx(1.0) and staying != two


def test_emulator_assumptions_time_the_emulator_and_leave_nothing_behind(aws):
    local = emulator_assumptions(aws.session, "lnn-test-bucket", "lnn-results", large_bytes=2_000_000)
    assert local.s3_latency > 0 and local.bandwidth > 0 and local.dynamodb_latency > 0
    aws_figures = bench_projection.AwsAssumptions()  # timed, not AWS's (no bound on a time: the machine may be busy)
    assert local.s3_put_latency > 0 and local.s3_put_seconds_per_mib >= 0
    assert local.s3_put_latency != aws_figures.s3_put_latency
    assert local.s3_put_seconds_per_mib != aws_figures.s3_put_seconds_per_mib
    assert local.invoke_latency == local.hop_latency == 0 and not local.chain_state_cached
    s3 = aws.session.client("s3")
    assert "Contents" not in s3.list_objects_v2(Bucket="lnn-test-bucket", Prefix=PROBE_PREFIX)
    item = aws.session.client("dynamodb").get_item(
        TableName="lnn-results", Key={"run_id": {"S": PROBE_PREFIX}, "epoch": {"N": "-1"}}
    )
    assert "Item" not in item


def test_workers_options():
    assert positive_ints("1024,512,10") == [1024, 512, 10]
    for bad in ("", "1,,2", "0,2", "a"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integers"):
            positive_ints(bad)
    job = bench_workers.WorkersJob.from_args(
        argparse.Namespace(
            workers_examples=100,
            workers_neurons=[16, 10],
            workers_dtype="float32",
            workers_memory=4096,
            workers_k=[1, 2],
            workers_epochs=3,
            workers_repeats=5,
            workers_reduce="workers",
        )
    )
    assert job == bench_workers.WorkersJob(100, (16, 10), "float32", 4096, (1, 2), 3, 5, "workers")


def test_a_deliverys_own_work_counts_once_per_delivery_on_the_critical_path():
    busy = bench_projection.AwsAssumptions(**{**ASSUMED.__dict__, "handler_overhead": 0.1})
    for K, deliveries in ((1, 1), (4, 2)):
        added = (
            bench_projection.aws_round(4.0, K, G, busy)["seconds"]
            - bench_projection.aws_round(4.0, K, G, ASSUMED)["seconds"]
        )
        assert added == pytest.approx(0.1 * deliveries, abs=1e-12)


def test_the_workers_k_must_include_one_and_two(capsys):
    from lnn_cli.bench.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--job", "workers", "--workers-k", "4,8"])
    assert exit_info.value.code == 2
    assert "--workers-k must include 1 and 2" in capsys.readouterr().err


def test_the_workers_epochs_leave_the_median_interval_clear_of_a_data_load(capsys):
    from lnn_cli.bench.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--job", "workers", "--workers-epochs", "2"])
    assert exit_info.value.code == 2
    assert "--workers-epochs must be at least 4" in capsys.readouterr().err


def test_persistent_round_follows_its_formula_and_pays_no_invocation_per_round():
    four = bench_projection.persistent_round(4.0, 4, G, ASSUMED)
    moved = 0.02 + 0.5  # one S3 round trip of G bytes
    per_round = 3 * moved + (0.02 + 0.125) + 8 * 0.01 + 1.5 * 0.01  # polls back to back: p = d
    lives = int(300 // (1.0 + per_round)) - 1  # rounds a life holds, less the one it hands over in
    communication = per_round + (1.0 + moved) / lives  # the hand-over: a cold start and the state's GET
    assert four["compute"] == pytest.approx(1.0)
    assert four["seconds"] == pytest.approx(1.0 + communication, abs=1e-12)
    # billed: the four workers for the whole round; 4 invocations a life; 12 PUTs (the sums in two objects and the
    # slice); 32 GETs, 4 more for the slice that crosses the two objects, and 16 a life
    lambda_cost = 4 * (1.0 + communication) * 1769 / 1024 * 0.0000133334 + 4 / lives * 0.20e-6
    assert four["cost_by_service"]["lambda"] == pytest.approx(lambda_cost, rel=1e-12)
    assert four["cost_by_service"]["s3"] == pytest.approx(
        (12 * 0.005 + (32 + 4 + 16 / lives) * 0.0004) / 1000, rel=1e-12
    )
    # a slower poll costs half an interval at each of the round's three waits
    slower = bench_projection.persistent_round(4.0, 4, G, ASSUMED, poll_interval=0.05)
    assert slower["seconds"] - four["seconds"] == pytest.approx(1.5 * 0.04, abs=1e-3)  # (a life holds fewer rounds)
    # without the invocation hops and the state's GETs it beats LNN's round of invoked workers at every K
    for K in (2, 8, 64):
        assert (
            bench_projection.persistent_round(4.0, K, G, ASSUMED)["seconds"]
            < bench_projection.aws_round(4.0, K, G, ASSUMED)["seconds"]
        )
    projection = bench_projection.aws_projection(4.0, G, (1, 4), ASSUMED, design="persistent")
    assert projection["rows"][0] == bench_projection.aws_round(4.0, 1, G, ASSUMED) | {"speedup": 1.0, "cost_ratio": 1.0}


def test_the_staying_round_follows_its_formula_and_pays_no_invocation_per_round():
    a = ASSUMED
    four = bench_projection.staying_round(4.0, 4, G, a)

    def get(n):
        return a.s3_latency + n / a.bandwidth

    def put(n, objects=1):
        return a.s3_put_latency + max(n / objects * a.s3_put_seconds_per_mib / 2**20, n / a.bandwidth)

    d = a.dynamodb_latency
    per_round = put(G, 2) + get(G) + put(G / 4) + get(G - G / 4) + 10 * d + d  # polls back to back: p = d
    lives = int((300 - 20) // (1.0 + per_round)) - 3  # rounds a life holds: a commit keeps three rounds' time
    communication = per_round + (1.0 + a.hop_latency + get(G)) / lives  # the hand-over: K new invocations
    assert four["compute"] == pytest.approx(1.0)
    assert four["seconds"] == pytest.approx(1.0 + communication, abs=1e-12)
    # billed: the four workers for the whole round; 4 invocations a life; 12 PUTs (the sums in two objects, the
    # slice's rows and t in one); 16 ranged GETs and 12 slices, and 4 a life
    lambda_cost = 4 * (1.0 + communication) * 1769 / 1024 * 0.0000133334 + 4 / lives * 0.20e-6
    assert four["cost_by_service"]["lambda"] == pytest.approx(lambda_cost, rel=1e-12)
    assert four["cost_by_service"]["s3"] == pytest.approx((12 * 0.005 + (16 + 12 + 4 / lives) * 0.0004) / 1000)
    # without the invocation hops and the state's GETs it beats LNN's round of invoked workers at every K
    for K in (2, 8, 64):
        assert (
            bench_projection.staying_round(4.0, K, G, a)["seconds"]
            < bench_projection.aws_round(4.0, K, G, a)["seconds"]
        )


def test_a_put_pays_its_rate_per_mib_for_one_object_and_the_bandwidth_for_several_at_once():
    aws = bench_projection.AwsAssumptions()  # issue 19's limits: PUT 60 ms + 20 ms per MiB, 75 MB/s, GET 27 ms
    ten = 10 * bench_projection.MIB
    assert aws.put(ten) == pytest.approx(0.060 + 0.200, abs=1e-12)
    assert aws.put(ten, objects=2) == pytest.approx(0.060 + ten / 75e6, abs=1e-12)  # the network: 0.140 s > 0.100 s
    assert aws.put(ten, objects=4) == aws.put(ten, objects=2)
    assert aws.get(ten) == pytest.approx(0.027 + ten / 75e6, abs=1e-12)


def test_workers_alive_across_rounds_gain_from_sums_in_two_objects_and_pay_a_put_each():
    aws = bench_projection.AwsAssumptions()
    G = 10_670_160  # the larger job's sums
    one = bench_projection.persistent_round(10.857, 16, G, aws, sums_objects=1)
    two = bench_projection.persistent_round(10.857, 16, G, aws)  # the design's two objects
    assert one["seconds"] - two["seconds"] == pytest.approx(aws.put(G) - aws.put(G, 2), abs=2e-3)
    more = (two["cost_by_service"]["s3"] - one["cost_by_service"]["s3"]) * 1000
    # 16 PUTs, and 16 GETs for the slice that crosses the two objects (and the hand-over's GETs, spread over a life
    # of more rounds)
    assert more == pytest.approx(16 * 0.005 + 16 * 0.0004, abs=0.01 * 0.005)


def test_latency_tails_slow_a_round_of_workers_alive_across_rounds_more_as_k_grows():
    aws = bench_projection.AwsAssumptions()
    G = 10_670_160
    for K in (2, 16):  # without tails and polls it is the mean-latency round, to the last bit of its formula
        assert bench_projection.persistent_round_with_tails(
            10.857, K, G, aws, spread=0.0, poll_interval=0.0
        ) == pytest.approx(bench_projection.persistent_round(10.857, K, G, aws, poll_interval=0.0)["seconds"], abs=1e-9)
    # each wait is the slowest of K workers, and a worker's K GETs the slowest of K: tails cost more at K = 16
    added = {
        K: bench_projection.persistent_round_with_tails(10.857, K, G, aws, spread=0.5)
        - bench_projection.persistent_round_with_tails(10.857, K, G, aws, spread=0.0)
        for K in (2, 16)
    }
    assert 0 < added[2] < added[16]
    # the draws are seeded: the figures the docs give, pinned (a change to the round's structure changes them)
    assert bench_projection.persistent_round_with_tails(10.857, 16, G, aws, spread=0.5) == pytest.approx(
        1.7149958174085365, rel=1e-9
    )
    assert bench_projection.persistent_round_with_tails(10.857, 16, G, aws, spread=0.25) == pytest.approx(
        1.4920456310808505, rel=1e-9
    )
    assert bench_projection.persistent_round_with_tails(
        10.857, 2, G, aws, spread=0.0, poll_interval=0.01
    ) == pytest.approx(6.236740023476874, rel=1e-9)
    # a chain of single requests pays each S3 and DynamoDB request's lognormal mean, exp(sigma^2 / 2) its median
    mean = bench_projection.with_mean_latencies(aws, 0.5)
    assert mean.s3_put_latency == pytest.approx(0.060 * 1.1331484530668263, rel=1e-12)
    assert mean.s3_latency == pytest.approx(0.027 * 1.1331484530668263, rel=1e-12)
    assert mean.invoke_latency == aws.invoke_latency and mean.hop_latency == aws.hop_latency
    assert mean.bandwidth == aws.bandwidth and mean.s3_put_seconds_per_mib == aws.s3_put_seconds_per_mib


def test_the_bench_reports_the_persistent_designs_speedups_with_latency_tails():
    from lnn_cli.bench.tables import tails_line

    aws = bench_projection.AwsAssumptions()
    tails = bench_projection.tail_speedups(10.857, 10_670_160, aws, (8, 16))
    assert set(tails) == set(bench_projection.TAIL_SPREADS) and all(set(rows) == {8, 16} for rows in tails.values())
    chain = bench_projection.aws_round(10.857, 1, 10_670_160, bench_projection.with_mean_latencies(aws, 0.5))
    assert tails[0.5][16] == pytest.approx(chain["seconds"] / 1.7149958174085365, rel=1e-9)
    assert tails[0.5][16] < tails[0.25][16] < 8.0  # the target K = 16 reaches only with near-constant latencies
    assert "lognormal sigma 0.5: K = 8" in tails_line(tails)


def test_a_put_is_not_a_get_in_any_round():
    """With a PUT slower than a GET (its own latency and rate per MiB), every round pays a PUT where it writes and a
    GET where it reads."""
    MIB = bench_projection.MIB
    slow_put = bench_projection.AwsAssumptions(
        s3_latency=0.02,
        s3_put_latency=0.07,
        s3_put_seconds_per_mib=2.0,  # 2 s per MiB: slower than the 1 MB/s network
        bandwidth=1e6,
        invoke_latency=0.03,
        hop_latency=0.05,
        dynamodb_latency=0.01,
    )
    G = 500_000

    def get(n):
        return 0.02 + n / 1e6

    def put(n):
        return 0.07 + n * 2.0 / MIB

    S = 300_000  # the state, of another size than the sums (adam's would be larger)
    one = bench_projection.aws_round(4.0, 1, G, slow_put, state_bytes=S)
    assert one["seconds"] == pytest.approx(4.0 + put(S) + 0.02 + 5 * 0.01 + 0.03 + 0.05, abs=1e-12)
    four = bench_projection.aws_round(4.0, 4, G, slow_put, state_bytes=S)

    def put_two(n):  # two objects at once: each at the PUT's rate, or all through the network, the slower
        return 0.07 + max(n / 2 * 2.0 / MIB, n / 1e6)

    shard, sliced, commit = built_round_parts(4, G, S, get, put_two)
    assert four["seconds"] == pytest.approx(shard + sliced + commit + 2 * 0.05, abs=1e-12)


def test_a_persistent_workers_life_is_the_stacks_default_timeout():
    from lnn_stack.settings.deployment import TIMEOUT

    assert bench_projection.LIFE_SECONDS == TIMEOUT.default


def test_aws_projection_follows_its_formula():
    a = ASSUMED
    one = bench_projection.aws_round(4.0, 1, G, a)
    assert abs(one["seconds"] - (4.0 + (0.02 + 0.5) + 0.02 + 5 * 0.01 + 0.03 + 0.05)) < 1e-12
    four = bench_projection.aws_round(4.0, 4, G, a)
    assert abs(four["compute"] - 1.0) < 1e-12
    # compute T1/K shrinks; communication stays about four moves of G whatever K (S / K shrinks, the rest does
    # not): the least time per epoch is at the largest K, and the cost grows with K
    projection = bench_projection.aws_projection(2.0, 10_670_160)  # K G above 8 MiB at every K: rounds in slices
    rows = {row["workers"]: row for row in projection["rows"]}
    assert [row["workers"] for row in projection["rows"]] == [1, 2, 4, 8, 16, 32, 64] and rows[1]["speedup"] == 1.0
    assert projection["best_workers"] == min(rows, key=lambda K: rows[K]["seconds"]) == 64
    assert all(  # within 10 %: with gd a slice's rows are one object, whose PUT at K = 2 (5 MB) pays a PUT's rate
        rows[2 * K]["communication"] < rows[K]["communication"] < 1.1 * rows[64]["communication"]
        for K in (2, 4, 8, 16, 32)
    )
    assert all(rows[K]["cost"] < rows[2 * K]["cost"] for K in (1, 2, 4, 8, 16, 32))


def test_the_built_projection_reduces_small_rounds_in_their_shard_where_that_is_the_faster_round():
    small = {row["workers"]: row for row in bench_projection.aws_projection(2.0, 875_088)["rows"]}
    for K in (2, 4, 8):  # K G at most 8 MiB: reduced in the shard, one hop, and faster than in slices on AWS
        in_shard = bench_projection.aws_round(2.0, K, 875_088, in_shard=True)
        assert small[K]["seconds"] == in_shard["seconds"] < bench_projection.aws_round(2.0, K, 875_088)["seconds"]
    for K in (16, 32, 64):
        assert small[K]["seconds"] == bench_projection.aws_round(2.0, K, 875_088)["seconds"]


def test_the_round_reduced_in_its_shard_follows_its_formula():
    a, K, S = ASSUMED, 4, G
    row = bench_projection.aws_round(4.0, K, G, a, in_shard=True)

    def get(n):
        return a.s3_latency + n / a.bandwidth

    def put(n, objects=1):
        return a.s3_put_latency + max(n / objects * a.s3_put_seconds_per_mib / 2**20, n / a.bandwidth)

    d = a.dynamodb_latency
    shard = get(G) + 1.0 + put(G, 2) + 6 * d
    reduce = d + get((K - 1) * G + S) + d + put(S, K) + a.s3_latency + 5 * d + a.invoke_latency
    assert row["seconds"] == pytest.approx(shard + reduce + a.hop_latency, abs=1e-12)
    # 12 PUTs (each shard's two sums objects, the 4 state objects: with gd a slice is one); 26 GETs (the shards' 16
    # state slices, the other 3 shards' 6 sums objects, the 4 state objects)
    assert row["cost_by_service"]["s3"] == pytest.approx((12 * 0.005 + 26 * 0.0004) / 1000, rel=1e-12)
