"""The deterministic simulator (lnn_cli.simulate, issue 16): seeded schedules of the real handlers under faults,
every invariant checked after every scheduler event. A failure names its seed and the command that replays it."""

import pytest

from lnn_cli.simulate.search import runner

SEEDS_PER_BLOCK = 30  # make test: 8 blocks, 240 seeds
BLOCKS = 8
SLOW_SEEDS_PER_BLOCK = 500  # make slow: 20 blocks, 10,000 seeds (seeds 100000..109999)
SLOW_BLOCKS = 20
SLOW_FIRST = 100_000


@pytest.fixture
def world():
    """One in-process AWS for the test's schedules, closed after it (other tests start their own mock_aws)."""
    runner.world()
    yield
    runner.close_world()


def run_block(seeds):
    failures = []
    summary = runner.run_seeds(seeds, on_result=lambda result: failures.append(result) if result.failed else None)
    print(summary.report())
    assert not failures, "\n\n".join(
        f"{result.summary()}\nshrink: .venv/bin/python -m lnn_cli.simulate --seed {result.seed} --shrink"
        for result in failures[:3]
    )
    return summary


@pytest.mark.parametrize("block", range(BLOCKS))
def test_seeded_schedules_keep_every_invariant(world, block):
    summary = run_block(range(block * SEEDS_PER_BLOCK, (block + 1) * SEEDS_PER_BLOCK))
    assert sum(summary.faults.values()) > SEEDS_PER_BLOCK  # they are stormy, not calm


@pytest.mark.slow
@pytest.mark.parametrize("block", range(SLOW_BLOCKS))
def test_ten_thousand_seeded_schedules_keep_every_invariant(world, block):
    first = SLOW_FIRST + block * SLOW_SEEDS_PER_BLOCK
    run_block(range(first, first + SLOW_SEEDS_PER_BLOCK))


def test_a_seed_replays_exactly(world):
    for seed in (3, 17):
        first, second = runner.run_seed(seed, trace=True), runner.run_seed(seed, trace=True)
        assert first.signature == second.signature and first.trace == second.trace
        assert first.faults, "seeds 3 and 17 inject faults"


def test_disabling_a_fault_keeps_the_draws_aligned(world):
    """--disable N draws the fault as before and leaves it out: the faults before it are the same ones."""
    full = runner.run_seed(3)
    assert len(full.faults) >= 3
    without = runner.run_seed(3, disabled={3})
    assert [f.describe() for f in without.all_faults[:2]] == [f.describe() for f in full.all_faults[:2]]
    assert without.all_faults[2].disabled and without.all_faults[2].kind == full.all_faults[2].kind


def test_moto_reached_directly_behaves_as_through_boto3(world):
    """The direct clients are a shortcut past botocore and moto's HTTP layer: the same seeds give the same schedule
    (every choice, fault, outcome and time) through boto3."""
    for seed in (1, 2, 5):
        direct, boto = runner.run_seed(seed), runner.run_seed(seed, mode="boto")
        assert direct.signature == boto.signature, seed


def test_a_mutant_that_lets_a_late_twin_start_its_step_is_caught_and_shrunk(world, monkeypatch):
    """The simulator can fail: mark_started without its condition (a twin of a committed step computes it again)
    breaks the fence within a hundred seeds (5 of the first 88, the first seed 57), and the shrinker keeps a
    failing schedule of fewer faults."""
    from lnn_cli.simulate.search.shrink import shrink
    from lnn_core.aws.run_table import RunTable

    def mark_started(self, run_id, step, *, at):
        return self._conditional_update(
            run_id,
            "SET started_step = :step, heartbeat_at = :at",
            "#status = :running OR #status <> :running",
            {":step": step, ":at": at, ":running": "running"},
            status=True,
        )

    monkeypatch.setattr(RunTable, "mark_started", mark_started)
    failing = next((r for r in map(runner.run_seed, range(100)) if r.failed), None)
    assert failing is not None and failing.violation.invariant == "fence", failing and failing.violation
    smallest = shrink(failing.seed, quiet=True)
    assert smallest.failed and smallest.violation.invariant == "fence"
    assert len(smallest.faults) <= len(failing.faults)
    assert runner.run_seed(failing.seed, disabled=set(smallest.disabled)).signature == smallest.signature


def test_the_exhaustive_search_completes_a_small_case_and_reports_its_counts(world):
    """The K=1 run with every event delivered once, explored to the end without a fault and with at most one
    (make simulate EXHAUSTIVE=1 runs the issue's two cases, twins included): each state is expanded once, each
    delivery's handler run once per point, and every schedule ends checked."""
    from lnn_cli.simulate.search.exhaustive import explore

    calm = explore("K=1 epoch+finish, once", max_faults=0)
    assert calm.complete and not calm.violations, calm.report()
    assert calm.states > 50 and calm.ends >= 1 and calm.transitions > calm.states, calm.report()
    assert f"{calm.states} distinct states" in calm.report() and "complete" in calm.report()
    faulty = explore("K=1 epoch+finish, once", max_faults=1)
    assert faulty.complete and not faulty.violations, faulty.report()
    # a fault at every effect: many more states and ends (a crash's retry, a lost answer's second request)
    assert faulty.states > 20 * calm.states and faulty.ends > calm.ends, (faulty.report(), calm.report())
    # the memo: a delivery's handler runs once per point, far fewer times than the transitions that resume it
    assert faulty.deliveries < faulty.transitions / 10, faulty.report()


def test_the_exhaustive_search_reaches_what_its_schedules_reach_when_run_afresh(world, monkeypatch):
    """The saved states and the memos change nothing: every state of the small case (and a sample of its states
    with a fault) is reached again by its schedule run from the start in a simulator of its own, with the same
    digest; a state restored from a broken save is not."""
    from lnn_cli.simulate.search import exhaustive, memoized

    assert exhaustive.explore("K=1 epoch+finish, once", max_faults=0, verify_every=1).complete
    assert exhaustive.explore("K=1 epoch+finish, once", max_faults=1, verify_every=200, max_states=2000).states

    class Forgetful(memoized.MemoSimulator):
        def restore(self, state):  # a save that loses the monitor's memory of commits
            super().restore(state)
            self.monitor.commits = {}

    monkeypatch.setattr(exhaustive, "MemoSimulator", Forgetful)
    with pytest.raises(exhaustive.MemoDiverged):
        exhaustive.explore("K=1 epoch+finish, once", max_faults=0, verify_every=1)


def test_the_exhaustive_search_catches_a_mutant_and_replays_its_script(world, monkeypatch):
    """The reductions keep the interleaving that matters: with mark_started's condition removed, a twin of the
    finish that starts once its step committed computes the step again, and the search finds it (the fence). The
    script it reports replays that very violation."""
    from lnn_cli.simulate.search.exhaustive import explore, replay
    from lnn_core.aws.run_table import RunTable

    def mark_started(self, run_id, step, *, at):
        return self._conditional_update(
            run_id,
            "SET started_step = :step, heartbeat_at = :at",
            "#status = :running OR #status <> :running",
            {":step": step, ":at": at, ":running": "running"},
            status=True,
        )

    monkeypatch.setattr(RunTable, "mark_started", mark_started)
    found = explore("K=1 epoch+finish", max_faults=0, first_violation=True)
    assert found.violations and not found.complete, found.report()
    script, result = found.violations[0]
    assert result.violation.invariant == "fence", result.violation
    assert replay("K=1 epoch+finish", script, max_faults=0).violation.detail == result.violation.detail


def test_every_port_call_is_an_interleaving_point_of_the_exhaustive_search_but_those_that_commute():
    """Reads are points (a read's answer depends on the writes before it); an invoke (it only queues), the usage
    ADD (nothing reads it) and a read of the training data (never written in a run) run with what precedes them."""
    from lnn_cli.simulate.interleaving import DATA_KEY, commutes

    assert not commutes("table.get_run", ("sim-run",))
    assert not commutes("store.get_bytes", ("runs/sim-run/epoch-1.npz",))
    assert not commutes("table.mark_started", ("sim-run", 1))
    assert commutes("invoker.invoke_async", ({"step": 2},))
    assert commutes("table.add_usage", ("sim-run", {}))
    assert commutes("store.get_bytes", (DATA_KEY,))


def test_the_exhaustive_search_offers_one_of_two_fresh_twins_only():
    """Symmetry reduction: two twins of an event, neither started, are one choice; a started pair, a retry, a
    throttled twin or another event stays a choice of its own."""
    from lnn_cli.simulate.deliveries import Delivery, one_of_each_fresh_twin_pair

    def delivery(number, request_id, **fields):
        return Delivery(number, "trainer", {"step": 2}, request_id, due=5.0, born=5.0, **fields)

    assert [d.number for d in one_of_each_fresh_twin_pair([delivery(1, "r1"), delivery(2, "r1d", copy=1)])] == [1]
    assert len(one_of_each_fresh_twin_pair([delivery(1, "r1"), delivery(2, "r2")])) == 2
    assert len(one_of_each_fresh_twin_pair([delivery(1, "r1"), delivery(2, "r1d", copy=1, attempt=1)])) == 2
    assert len(one_of_each_fresh_twin_pair([delivery(1, "r1"), delivery(2, "r1d", copy=1, throttles=1)])) == 2
    other = Delivery(2, "trainer", {"step": 3}, "r1d", due=5.0, born=5.0, copy=1)
    assert len(one_of_each_fresh_twin_pair([delivery(1, "r1"), other])) == 2
