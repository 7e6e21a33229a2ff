"""`make mutants`: the concurrency tests must catch every break of the exactly-once protocol, by an assertion.

Each mutant is one edit of the protocol, applied to a copy of the project: a condition clause replaced by a
tautology on the same placeholders (so that the request stays well-formed: DynamoDB rejects an expression with an
unused placeholder, and an edit that only breaks the request tests nothing), a write made a no-op, a step of the
protocol left out. The concurrency tests run on the unchanged copy first (they must pass), then on each mutant.

A mutant is caught only when a test fails by an assertion or a violated invariant, and the request it made before
was well-formed (the judge, `tests/mutant_judge.py`, watches both); a test that fails by any other exception (a
ValidationException, a TypeError, an error in set-up) catches nothing, and a mutant that only such failures
"catch" SURVIVED. Per mutant the report says which test caught it, with its assertion's first line, and how long
it took. An edit that no longer applies (the code moved) is an error too, so that the check cannot silently test
nothing.

    python -m tests.mutants                 # every mutant, each run until its first catch (`make mutants`)
    python -m tests.mutants --all           # every test on every mutant: all that catch each one
    python -m tests.mutants --only 3 7      # mutants 3 and 7 (numbers as listed by --list)
    python -m tests.mutants --list
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
COPIED = ("app.py", "cdk.json", "pyproject.toml", "lambda_src", "lnn_stack", "lnn_cli", "tests", "cdk.out")
CONCURRENCY_TESTS = (
    "tests/integration/test_concurrency_scenarios.py",
    "tests/integration/test_concurrent_chaos.py",
    "tests/integration/test_workers.py",
    "tests/integration/test_shard_reduce.py",
    "tests/integration/test_fit_round.py",
    "tests/integration/test_workers_chaos.py",
    "tests/integration/test_staying_workers.py",
    "tests/integration/test_staying_conditions.py",
    "tests/integration/test_round_stops.py",
    "tests/integration/test_round_state.py",
    "tests/integration/test_lost_answers.py",
    "tests/integration/test_lost_answers_review.py",
    "tests/integration/test_run_control.py",
    "tests/integration/test_run_control_step_bounds.py",
    "tests/integration/test_protocol_conditions.py",
    "tests/integration/test_stop_resume.py",
    "tests/integration/test_stop_resume_races.py",
    "tests/simulation",
)
JUDGE = "tests.mutant_judge"
JOBS = 2  # mutants judged at once, one test process each (CI has 2 cores)
MUTANT_TIMEOUT = 1200  # seconds: a mutant whose tests hang is a survivor, not a stuck CI job
CORE = "lambda_src/lnn_core/"
RUN_RECORD, TRAINER = CORE + "aws/run_record.py", CORE + "protocol/trainer.py"
ROUND_MEMBERS = CORE + "protocol/round_members.py"
ROUND_BARRIER, EPOCH_ITEMS = CORE + "aws/round_barrier.py", CORE + "aws/epoch_items.py"
SENDING, RUN_CONTROL = CORE + "protocol/sending.py", CORE + "run_control.py"
ROUND_STEPS = CORE + "protocol/round_steps.py"
STAYING = CORE + "protocol/staying.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    original: str
    mutated: str
    # Fragments of the ids of the tests that catch it, run first so that the run stops early: an order, not a
    # verdict (the judge counts whatever test catches it; with --all every test runs).
    first: tuple[str, ...] = field(default=())


MUTANTS = (
    Mutant(
        "the commit without `#committed = :seen`",
        RUN_RECORD,
        'condition = "#committed = :seen AND #status = :running"',
        'condition = ":seen = :seen AND #status = :running"',
        first=("test_1_an_unseeded_run_draws_its_seed_once",),
    ),
    Mutant(
        "the commit without `#status = :running`",
        RUN_RECORD,
        'condition = "#committed = :seen AND #status = :running"',
        'condition = "#committed = :seen AND (#status = :running OR #status <> :running)"',
        first=("test_a_delivery_that_computed_while_the_run_was_stopped",),
    ),
    Mutant(
        "claim_send without `invoked_step < :next`",
        RUN_RECORD,
        '"committed_step = :step AND #status = :running AND invoked_step < :next"',
        '"committed_step = :step AND #status = :running AND :next = :next"',
        first=("test_a_late_twin_that_read_the_successor_unsent",),
    ),
    Mutant(
        "mark_invoked writing nothing",
        RUN_RECORD,
        '"""Record that the invocation of `step` was sent, so that no catch-up sends it again."""\n',
        '"""Record that the invocation of `step` was sent, so that no catch-up sends it again."""\n        return\n',
        first=("test_a_duplicate_of_the_last_committed_step_a_minute_later",),
    ),
    Mutant(
        "claim_notification without `notified = :no`",
        RUN_RECORD,
        '"notified = :no AND (attribute_not_exists(notify_lease) OR notify_lease < :now OR notifier = :claimant)"',
        '":no = :no AND (attribute_not_exists(notify_lease) OR notify_lease < :now OR notifier = :claimant)"',
        first=("test_a_twin_of_the_finish_that_claims_after_the_message_was_sent",),
    ),
    Mutant(
        "claim_notification always succeeding",
        RUN_RECORD,
        '"notified = :no AND (attribute_not_exists(notify_lease) OR notify_lease < :now OR notifier = :claimant)"',
        '":no = :no AND :now = :now AND :claimant = :claimant"',
        first=("test_2_twins_of_the_finish_step_send_one_message",),
    ),
    Mutant(
        "claim_notification without `OR notifier = :claimant` (a lost answer: no message)",
        RUN_RECORD,
        '"notified = :no AND (attribute_not_exists(notify_lease) OR notify_lease < :now OR notifier = :claimant)"',
        '"notified = :no AND (attribute_not_exists(notify_lease) OR notify_lease < :now)"',
        first=("test_1_a_notification_claim_whose_answer_was_lost",),
    ),
    Mutant(
        # LEASE_SECONDS = 0.0 itself fails control's import-time assert (CLAIM_CALL_SECONDS < LEASE_SECONDS): a
        # collection error, which the judge does not count. The lease of 0 s is taken where every lease is made.
        "a lease of 0 s",
        SENDING,
        "return ports.clock() + min(LEASE_SECONDS, remaining)",
        "return ports.clock() + 0.0 * min(LEASE_SECONDS, remaining)",
        first=("test_a_twin_that_comes_a_second_after_the_commit",),
    ),
    Mutant(
        "record_resume without its heartbeat condition",
        RUN_RECORD,
        'f"committed_step = :seen AND #status = :running AND ({heartbeat} OR resume_token = :token)"',
        'f"committed_step = :seen AND #status = :running AND ({heartbeat} OR NOT ({heartbeat}) '
        'OR resume_token = :token)"',
        first=("test_the_watchdog_does_not_resume_a_run_whose_step_started",),
    ),
    Mutant(
        "record_resume without its token clause",
        RUN_RECORD,
        'f"committed_step = :seen AND #status = :running AND ({heartbeat} OR resume_token = :token)"',
        'f"committed_step = :seen AND #status = :running AND ({heartbeat})"',
        first=("test_2_a_watchdog_resume_whose_answer_was_lost",),
    ),
    Mutant(
        "the watchdog's fail ignoring the heartbeat it judged",
        RUN_CONTROL,
        "unless_alive=True),",
        "unless_alive=False),",
        first=("test_watchdog_does_not_fail_a_run_whose_step_starts_while_it_judges",),
    ),
    Mutant(
        "a losing twin that does not catch up",
        TRAINER,
        "resent = ending.catch_up(self.ports, latest, claimant=claimant, context=context)",
        "resent = False",
        first=("test_a_loser_whose_commit_fails_after_the_winner_died",),
    ),
    Mutant(
        "mark_started without its condition",
        RUN_RECORD,
        '"committed_step = :previous AND #status = :running",\n            {":step": step, ":at": at',
        '":previous = :previous AND (#status = :running OR #status <> :running)",\n'
        '            {":step": step, ":at": at',
        first=("test_simulator.py::test_seeded_schedules_keep_every_invariant[0]",),
    ),
    Mutant(
        "a barrier that admits the same shard twice",
        ROUND_MEMBERS,
        "if len(before | {step_event.shard}) < step_event.shards:",
        "if len(before) + 1 < step_event.shards:",
        first=("test_shards_in_any_order_and_every_one_twice",),
    ),
    Mutant(
        "a re-send without the claim",
        SENDING,
        "    if not claimed:\n        return None\n    return next_send(",
        "    return next_send(",
        first=("test_3_a_duplicate_whose_commit_fails_while_the_winner_sends",),
    ),
    Mutant(
        "create_run ignoring its launch token",
        RUN_RECORD,
        'if existing is None or existing.get("launch_token") != token:',
        "if True:",
        first=("test_2_a_launch_whose_create_answer_was_lost",),
    ),
    Mutant(
        "claim_slices without `slices_by = :claimant`",
        ROUND_BARRIER,
        '"attribute_not_exists(slices_lease) OR slices_lease < :now OR slices_by = :claimant"',
        '"attribute_not_exists(slices_lease) OR slices_lease < :now"',
        first=("test_2_a_round_whose_slices_claim_answer_was_lost",),
    ),
    Mutant(
        "claim_commit without `commit_by = :claimant`",
        ROUND_BARRIER,
        '"attribute_not_exists(commit_lease) OR commit_lease < :now OR commit_by = :claimant"',
        '"attribute_not_exists(commit_lease) OR commit_lease < :now"',
        first=("test_a_round_whose_commit_claim_answer_was_lost",),
    ),
    Mutant(
        "a slice barrier that admits the same slice twice",
        ROUND_MEMBERS,
        "if len(before | {step_event.slice}) < step_event.shards:",
        "if len(before) + 1 < step_event.shards:",
        first=("test_slices_in_any_order_and_every_one_twice",),
    ),
    Mutant(
        "a slice joining its barrier before its outputs are written",
        ROUND_MEMBERS,
        "        self._put_outputs(result, scratch=True)\n"
        "        before = self.ports.table.join_slices(step_event.run_id, step_event.step, step_event.slice)\n",
        "        before = self.ports.table.join_slices(step_event.run_id, step_event.step, step_event.slice)\n"
        "        self._put_outputs(result, scratch=True)\n",
        first=("test_a_slice_that_dies_at_each_effect",),
    ),
    Mutant(
        "a late twin of a slice writing its rows after its round committed",
        ROUND_MEMBERS,
        "        if not self._still_next(step_event.run_id, step_event.step):\n"
        '            return {"outcome": "duplicate"}\n'
        "        self._put_outputs(result, scratch=True)\n"
        "        before = self.ports.table.join_slices(",
        "        self._put_outputs(result, scratch=True)\n        before = self.ports.table.join_slices(",
        first=("test_a_late_twin_slice_that_computed_while_its_state_became_obsolete",),
    ),
    Mutant(
        "a slice not checking that its rows stay finite (the run fails a round late, or not at all)",
        ROUND_STEPS,
        "        finite_params(params, epoch)\n        return slice_objects(",
        "        return slice_objects(",
        first=("test_a_round_of_workers_diverges_at_the_chains_epoch",),
    ),
    Mutant(
        "a shard that reduces its round without fencing that body (it computes a round committed since its claim)",
        ROUND_MEMBERS,
        "        if not self.ports.table.mark_started(step_event.run_id, step_event.step, at=self.ports.clock()):\n"
        '            return {"outcome": "duplicate"}  # this body\'s fence',
        '        if False:\n            return {"outcome": "duplicate"}  # this body\'s fence',
        first=("test_a_shard_whose_round_was_committed_after_its_claim_computes_nothing",),
    ),
    Mutant(
        "a shard that reduces its round writing its slices' rows after the round committed",
        ROUND_MEMBERS,
        "        if not self._still_next(step_event.run_id, step_event.step):\n"
        '            return {"outcome": "duplicate"}  # committed while it computed',
        '        if False:\n            return {"outcome": "duplicate"}  # committed while it computed',
        first=("test_a_shard_whose_round_was_committed_while_it_computed_writes_nothing",),
    ),
    Mutant(
        "a losing committer keeping its commit claim (a quick `lnn resume` finds nothing it may commit)",
        ROUND_MEMBERS,
        "            self.ports.table.release_commit(step_event.run_id, step_event.step, claimant=claimant)\n",
        "            pass\n",
        first=("test_a_quick_resume_after_a_stop_that_beat_a_claimed_commit",),
    ),
    Mutant(
        "the state before an epoch deleted at its first commit (a stop in mid-epoch has no model)",
        ROUND_STEPS,
        "        if batch > 1:  # the state before the epoch's first batch stays until its end: a stop's model comes "
        "from it\n",
        "        obsolete += state_slice_keys(config, epoch, 0, count)\n"
        "        if batch > 1:  # the state before the epoch's first batch stays until its end: a stop's model comes "
        "from it\n",
        first=("test_a_stop_in_the_slice_phase_of_a_later_batch",),
    ),
    Mutant(
        "a re-send that sends nothing for a round whose slices are all in but uncommitted",
        SENDING,
        "    return missing or slices[:1]\n",
        "    return missing\n",
        first=("test_a_round_whose_committer_died_after_every_slice_is_finished",),
    ),
    Mutant(
        "put_epoch_items without its ConditionCheck (a tautology)",
        EPOCH_ITEMS,
        '"ConditionExpression": "committed_step = :previous AND #status = :running",',
        '"ConditionExpression": ":previous = :previous AND (#status = :running OR #status <> :running)",',
        first=("test_8_a_losing_twin_does_not_rewrite",),
    ),
    Mutant(
        "the model published before the commit (the finish writes model.npz itself)",
        CORE + "protocol/steps.py",
        "result = StepResult(outputs={staged: model}, final=final)",
        "result = StepResult(outputs={staged: model, key: model}, final=final)",
        first=("test_4_a_finish_that_died_before_its_commit",),
    ),
    Mutant(
        "the watchdog not sweeping the messages owed",
        RUN_CONTROL,
        "for run_id in self.ports.table.runs_awaiting_message()\n",
        "for run_id in []\n",
        first=("test_the_watchdog_sends_the_message_of_a_run_whose_claimant_died",),
    ),
    Mutant(
        "lnn resume not refreshing the heartbeat",
        RUN_CONTROL,
        'and not ports.table.refresh_heartbeat(run_id, step=run["committed_step"], now=ports.clock())',
        'and False and not ports.table.refresh_heartbeat(run_id, step=run["committed_step"], now=ports.clock())',
        first=("test_6_lnn_resume_refreshes_the_heartbeat",),
    ),
    Mutant(
        "lnn resume continuing a run without its condition (that it is this stopped ending)",
        RUN_RECORD,
        'f"#status = :stopped AND {stopped}"',
        'f"(#status = :stopped OR #status <> :stopped) AND ({stopped} OR NOT {stopped})"',
        first=("test_a_late_resume_of_a_stop_that_was_continued_and_finished_changes_nothing",),
    ),
    Mutant(
        "a stop's ending without the stop request it read (a late stop twin re-stops a resumed run)",
        RUN_RECORD,
        'condition += " AND stop_requested = :stop AND stop_token = :stop_token"',
        'condition += " AND (stop_requested = :stop OR stop_token = :stop_token)"',
        first=("test_a_late_twin_of_the_stop_does_not_stop_the_run_again_after_lnn_resume",),
    ),
    Mutant(
        "a relaunch without the data-ETag check",
        CORE + "launch/launcher.py",
        'if existing.get("data_etag") != etag or existing.get("part_etags") != part_etags:',
        "if False:",
        first=("test_9_a_second_launch_after_the_data_was_replaced",),
    ),
    Mutant(
        "a fan-out answering in the order its requests complete (a reduce adds its shards out of shard order)",
        CORE + "aws/ports.py",
        "                    futures.append(pool.submit(context.run, call, item))\n",
        "                    futures.append(pool.submit(context.run, call, item))\n"
        "                    futures[-1].add_done_callback(lambda done, listed=futures: "
        "listed.append(listed.pop(listed.index(done))))\n",
        first=("test_a_slice_adds_the_shards_sums_in_shard_order_whatever_order_their_gets_complete_in",),
    ),
    Mutant(
        "a fan-out that drops a failed request's error (a round's shard invoke lost, recorded as sent)",
        CORE + "aws/ports.py",
        "return [future.result() for future in futures]",
        "return [None if future.exception() else future.result() for future in futures]",
        first=("test_a_committing_slice_whose_shard_invokes_failed_midway_is_finished_by_its_retry",),
    ),
    Mutant(
        "a round's shard events recorded as sent before every invoke was accepted",
        SENDING,
        "        ports.fan_out.map(ports.invoker.invoke_async, self.invocations)\n"
        "        if self.invoked_step is not None:\n"
        "            ports.table.mark_invoked(self.run_id, self.invoked_step)\n",
        "        if self.invoked_step is not None:\n"
        "            ports.table.mark_invoked(self.run_id, self.invoked_step)\n"
        "        ports.fan_out.map(ports.invoker.invoke_async, self.invocations)\n",
        first=("test_a_committing_slice_whose_shard_invokes_failed_midway_is_finished_by_its_retry",),
    ),
    Mutant(
        "a fit without its check that the finish is still next (an orphan written after the commit's cleanup)",
        ROUND_MEMBERS,
        '            return {"outcome": "duplicate"}  # a late twin: the finish committed while it computed\n',
        "            pass  # a late twin: the finish committed while it computed\n",
        first=("test_a_fit_whose_finish_committed_while_it_computed_writes_nothing",),
    ),
    Mutant(
        "a fit that claims the finish's commit before every fit is in",
        ROUND_MEMBERS,
        "        if len(before | {step_event.shard}) < config.workers:\n",
        "        if len(before | {step_event.shard}) < 1:\n",
        first=("test_the_finish_of_k_workers_is_k_fit_deliveries_each_reading_its_own_part",),
    ),
    Mutant(
        "the commit of a member's step schedules what follows the member's state (a finish of K workers sends a round)",
        TRAINER,
        "position = dataclasses.replace(position, state=MEMBER_STEP.get(position.state, position.state))",
        "position = dataclasses.replace(position, state=position.state)",
        first=("test_the_finish_of_k_workers_is_k_fit_deliveries_each_reading_its_own_part",),
    ),
    Mutant(
        "a re-send of a finish whose fits are all in sends a round's slice events",
        SENDING,
        '    if following["state"] == "finish":\n        return invocations[:1]\n',
        "",
        first=("test_what_a_finish_of_k_workers_still_misses_is_its_missing_fits_then_one_fit",),
    ),
    Mutant(
        "a fit event accepted in a run of one worker (it retrains the epoch and commits the finish)",
        CORE + "protocol/events.py",
        "        if step_event.shards < 2:\n",
        "        if step_event.shards < 1:\n",
        first=("test_a_fit_event_of_a_run_of_one_worker_is_refused_before_it_computes",),
    ),
    Mutant(
        "a finish that fails where a fit output expired instead of computing it",
        CORE + "protocol/round_steps.py",
        "        except RunFailure:\n            return None\n",
        "        except ZeroDivisionError:\n            return None\n",
        first=("test_a_run_stopped_during_its_finish_and_resumed_after_the_scratch_expired_finishes",),
    ),
    Mutant(
        "a commit keeping the workers without recording the next round sent",
        TRAINER,
        'fields |= {"invoked_step": following.step, staying.STAYING_FIELD: following.step}',
        "fields |= {staying.STAYING_FIELD: following.step}",
        first=("test_a_commit_that_keeps_the_workers_leaves_no_send",),
    ),
    Mutant(
        "a staying worker's retry never joining its peers",
        STAYING,
        "        return None\n    return parse_event(shard_event(following, step_event.shard))",
        "        return None\n    return None",
        first=("test_a_worker_that_died_in_its_rounds_is_replaced",),
    ),
    Mutant(
        "staying workers going on whatever the commit did",
        STAYING,
        "                and run.get(STAYING_FIELD) == step_event.step + 1\n",
        "",
        first=("test_a_commit_that_keeps_the_workers_leaves_no_send",),
    ),
    Mutant(
        "a staying worker's waits ending one worker short (its slice before every shard is in)",
        STAYING,
        "lambda progress: len(members(progress)) >= step_event.shards,",
        "lambda progress: len(members(progress)) >= step_event.shards - 1,",
        first=("test_a_worker_makes_its_slice_only_once_every_shard_is_in",),
    ),
    Mutant(
        "a staying worker's hand-over that invokes nothing",
        STAYING,
        "            ports.invoker.invoke_async(event)\n",
        "",
        first=("test_a_worker_whose_time_runs_short_hands_its_shard_over",),
    ),
    Mutant(
        "a staying worker ending without its commits' cleanup",
        STAYING,
        "            if obsolete:\n"
        "                self._delete_obsolete(run_id, obsolete)\n"
        "            return {**outcome",
        "            return {**outcome",
        first=("test_staying_workers_leave_the_objects_of_a_round_in_slices",),
    ),
    Mutant(
        "the resume of staying workers sending the missing shards only",
        SENDING,
        "            return invocations  # every worker",
        "            pass  # every worker",
        first=("test_a_round_of_staying_workers_that_misses_a_shard",),
    ),
    Mutant(
        "a staying worker's shard claiming the slices as an invoked one",
        ROUND_MEMBERS,
        "        if config.reduce == STAYING_WORKERS:",
        "        if False:",
        first=("test_a_commit_that_keeps_the_workers_leaves_no_send",),
    ),
)


@dataclass
class Verdict:
    passed: bool  # the pytest run's exit status was 0
    seconds: float
    records: list[dict]
    summary: str
    details: list[str]
    timed_out: bool = False

    @property
    def catches(self) -> list[tuple[str, dict]]:
        return [
            (record["nodeid"], failure)
            for record in self.records
            for failure in record["failures"]
            if failure.get("counted")
        ]

    @property
    def other_failures(self) -> list[tuple[str, dict, dict]]:
        return [
            (record["nodeid"], failure, record)
            for record in self.records
            for failure in record["failures"]
            if not failure.get("counted")
        ]

    @property
    def ran(self) -> int:
        return sum(1 for record in self.records if not record["nodeid"].startswith("<"))

    def lnn_core(self) -> set[str]:
        return {record["lnn_core"] for record in self.records if "lnn_core" in record}


def copy_project(destination: Path) -> None:
    for name in COPIED:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        elif source.exists():
            shutil.copy2(source, destination / name)


def apply(mutant: Mutant, root: Path) -> None:
    path = root / mutant.path
    text = path.read_text()
    if text.count(mutant.original) != 1:
        raise SystemExit(f"mutant {mutant.name!r} no longer applies: {mutant.path} must hold its original text once")
    path.write_text(text.replace(mutant.original, mutant.mutated))


def test_paths(root: Path) -> list[str]:
    return [test for test in CONCURRENCY_TESTS if (root / test).exists()]


def run_tests(
    root: Path, *, parallel: bool, environment: dict[str, str] | None = None, timeout: float | None = None
) -> Verdict:
    """Run the concurrency tests of the copy at `root` under the judge; its report is read back per test."""
    report = root / "mutant-report.jsonl"
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": f"{root / 'lambda_src'}{os.pathsep}{root}",
        "LNN_MUTANT_REPORT": str(report),
        **(environment or {}),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rfE",
        "-m",
        "not slow",
        "-p",
        "no:cacheprovider",
        "-p",
        JUDGE,
        *(["-n", str(JOBS)] if parallel else ["-p", "no:xdist", "--continue-on-collection-errors"]),
        *test_paths(root),
    ]
    started, timed_out = time.monotonic(), False
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)  # the test process and its xdist workers, nothing else
        output, _ = process.communicate()
        timed_out = True
    seconds = time.monotonic() - started
    records = [json.loads(line) for line in report.read_text().splitlines() if line.strip()] if report.exists() else []
    lines = [line for line in (output or "").splitlines() if line.strip()]
    details = [line for line in lines if line.startswith(("FAILED", "ERROR", "E "))][:40]
    summary = lines[-1] if lines else ""
    return Verdict(process.returncode == 0 and not timed_out, seconds, records, summary, details, timed_out)


def describe(verdict: Verdict, *, every: bool) -> list[str]:
    """The lines that say why a mutant was caught, or why the failures it caused do not count."""
    lines = [
        f"    note: no test matches the hint {record['unmatched']!r} (the mutant's `first`); it ran in the "
        "collected order"
        for record in verdict.records
        if "unmatched" in record
    ]
    catches = verdict.catches if every else verdict.catches[:1]
    for nodeid, failure in catches:
        lines.append(f"    caught by {nodeid} :: {failure['type']}: {failure['message']}")
    if every or not verdict.catches:  # what failed without counting: on a survivor, why it survived
        for nodeid, failure, record in verdict.other_failures[:6]:
            why = (
                "tainted: it met ill-formed requests or programming errors first: "
                + "; ".join(record["ill_formed"][:2])
                if record.get("tainted") and failure["assertion"]
                else f"not an assertion ({failure['when']})"
            )
            lines.append(f"    failed, not counted ({why}): {nodeid} :: {failure['type']}: {failure['message']}")
    if verdict.timed_out:
        lines.append(f"    timed out after {verdict.seconds:.0f} s")
    return lines


def judge(index: int, mutant: Mutant, baseline: Path, scratch: Path, *, every: bool) -> tuple[bool, Verdict]:
    root = scratch / f"mutant-{index}"
    shutil.copytree(baseline, root, ignore=shutil.ignore_patterns("__pycache__", "mutant-report.jsonl"))
    apply(mutant, root)
    environment = {
        "LNN_MUTANT_BASELINE": str(scratch / "unmutated-ill-formed.json"),
        "LNN_MUTANT_ASSEMBLY": str(root / "cdk.out"),
        "LNN_MUTANT_STOP_AFTER": "0" if every else "1",
        "LNN_MUTANT_FIRST": ",".join(mutant.first),
    }
    verdict = run_tests(root, parallel=False, environment=environment, timeout=MUTANT_TIMEOUT)
    shutil.rmtree(root, ignore_errors=True)
    if verdict.lnn_core() and verdict.lnn_core() != {str((root / "lambda_src" / "lnn_core").resolve())}:
        raise SystemExit(
            f"mutant {mutant.name!r} was not tested: the tests imported lnn_core from {verdict.lnn_core()}"
        )
    return bool(verdict.catches), verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="run every test on every mutant (no early stop)")
    parser.add_argument("--only", type=int, nargs="+", metavar="N", help="judge only these mutants (1-based)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"mutants judged at once (default {JOBS})")
    options = parser.parse_args(argv)
    chosen = [
        (index, mutant) for index, mutant in enumerate(MUTANTS, start=1) if not options.only or index in options.only
    ]
    if options.list:
        for index, mutant in chosen:
            print(f"{index:2}. {mutant.name}  ({mutant.path})")
        return 0
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lnn-mutants-") as scratch_name:
        scratch = Path(scratch_name)
        baseline = scratch / "baseline"
        baseline.mkdir()
        copy_project(baseline)
        for index, mutant in chosen:  # before anything runs: every edit still applies
            text = (baseline / mutant.path).read_text()
            if text.count(mutant.original) != 1:
                raise SystemExit(
                    f"mutant {index} {mutant.name!r} no longer applies: {mutant.path} must hold its original text once"
                )
        unmutated = run_tests(baseline, parallel=True)
        failed = [(nodeid, failure) for nodeid, failure, _ in unmutated.other_failures] + unmutated.catches
        print(
            f"unmutated: {'passed' if unmutated.passed and not failed else 'FAILED'} in {unmutated.seconds:.0f} s "
            f"({unmutated.summary}; tests run from {', '.join(test_paths(baseline))})",
            flush=True,
        )
        if not unmutated.passed or failed:
            print("\n".join(unmutated.details), flush=True)  # which test failed unmutated, and why: the suite is wrong
            for nodeid, failure in failed[:20]:
                print(f"    {nodeid} :: {failure['type']}: {failure['message']}")
            return 1
        if unmutated.lnn_core() != {str((baseline / "lambda_src" / "lnn_core").resolve())}:
            print(f"the tests imported lnn_core from {unmutated.lnn_core()}, not from the copy")
            return 1
        ill_formed = {
            record["nodeid"]: len(record["ill_formed"]) for record in unmutated.records if record["ill_formed"]
        }
        (scratch / "unmutated-ill-formed.json").write_text(json.dumps(ill_formed))
        if ill_formed:  # allowed (a test may provoke them), and no taint for that test unless a mutant adds more
            print(
                f"unmutated: {len(ill_formed)} test(s) met ill-formed requests or programming errors: "
                + ", ".join(f"{nodeid} ({count})" for nodeid, count in sorted(ill_formed.items())[:5]),
                flush=True,
            )
        (baseline / "mutant-report.jsonl").unlink(missing_ok=True)

        def one(entry):
            index, mutant = entry
            caught, verdict = judge(index, mutant, baseline, scratch, every=options.all)
            lines = [
                f"mutant {index}/{len(MUTANTS)}, {mutant.name}: {'caught' if caught else 'SURVIVED'} "
                f"in {verdict.seconds:.0f} s ({verdict.ran} tests run; {verdict.summary})",
                *describe(verdict, every=options.all),
            ]
            print("\n".join(lines), flush=True)
            return index, mutant, caught, verdict

        with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            rows = sorted(pool.map(one, chosen), key=lambda row: row[0])
    print(f"\n{'#':>2}  {'mutant':<72} {'verdict':<8} {'s':>5}  caught by")
    for index, mutant, caught, verdict in rows:
        first = verdict.catches[0] if verdict.catches else None
        by = f"{first[0]} :: {first[1]['message']}" if first else "-"
        print(
            f"{index:>2}  {mutant.name[:72]:<72} {'caught' if caught else 'SURVIVED':<8} {verdict.seconds:>5.0f}  {by}"
        )
    survivors = [mutant.name for _, mutant, caught, _ in rows if not caught]
    total = time.monotonic() - started
    if survivors:
        print(f"{len(survivors)} of {len(rows)} mutants survived ({total:.0f} s): {'; '.join(survivors)}")
        return 1
    print(f"all {len(rows)} mutants caught, each by an assertion, in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
