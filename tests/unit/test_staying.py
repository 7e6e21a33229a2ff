"""Workers that stay: a wait's polls and its limit, and which event of a committed step joins the staying workers."""

import contextlib

import pytest

from lnn_core.errors import LnnInputError
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol import staying
from lnn_core.protocol.events import fit_event, make_event, parse_event, shard_event, slice_event
from lnn_core.protocol.schedule import Position

PARAMETERS = {
    "epochs": 2,
    "learning_rate": 0.1,
    "neurons": [3, 1],
    "activations": ["tanh", "sigmoid"],
    "granularity": "epoch",
    "workers": 3,
    "batch_size": 10,
    "reduce": "workers",
    "data": "runs/r1/data.npz",
}


class Ports:
    """A clock that moves only by the waits (and the reads that move it), the waits made, and whether they were
    within `waiting()`."""

    def __init__(self):
        self.now, self.waits, self.inside = 1000.0, [], False

    @contextlib.contextmanager
    def waiting(self):
        self.inside = True
        yield
        self.inside = False

    def clock(self):
        return self.now

    def wait(self, seconds):
        assert self.inside, "a pause outside the wait's span"
        self.waits.append(seconds)
        self.now += seconds


def test_a_wait_reads_back_to_back_then_pauses_longer_each_time_up_to_a_limit():
    ports, answers = Ports(), iter(range(200))
    assert staying.wait_for(ports, lambda: next(answers), lambda answer: answer == 150, seconds=1e6) == 150
    fast = staying.FAST_POLLS - 1  # the pauses after the first reads: none (the reads take no time here)
    assert ports.waits[:fast] == [1 / staying.POLL_READS_PER_SECOND] * fast
    slow = ports.waits[fast:]
    assert slow[0] == staying.SLOW_POLL_SECONDS[0] and slow[-1] == staying.SLOW_POLL_SECONDS[1]
    assert all(later == min(earlier * 1.5, staying.SLOW_POLL_SECONDS[1]) for earlier, later in zip(slow, slow[1:]))


def test_a_wait_answers_at_once_without_pausing_when_the_first_read_is_the_answer():
    ports = Ports()
    assert staying.wait_for(ports, lambda: "in", lambda answer: answer == "in", seconds=0.0) == "in"
    assert ports.waits == []


def test_a_wait_ends_with_none_once_its_limit_passed_on_the_ports_clock():
    ports, reads = Ports(), []

    def read():  # each read takes a tenth of a second
        reads.append(ports.now)
        ports.now += 0.1

    assert staying.wait_for(ports, read, lambda answer: False, seconds=30.0) is None
    assert reads[-1] + 0.1 >= 1030.0 > reads[-2] + 0.1  # its last read ended at or after the limit, none before


def run(committed=4, staying_step=5, reduce="workers", next_state="reduce"):
    config = TrainingConfig.from_parameters({**PARAMETERS, "reduce": reduce})
    following = make_event("r1", config, Position(committed + 1, next_state, 1, 0, batch=2), batches=3)
    return {
        "committed_step": committed,
        staying.STAYING_FIELD: staying_step,
        "next_event": following,
        "config": {**PARAMETERS, "reduce": reduce},
    }


def old_event(record, kind=shard_event, step=2):
    return parse_event(kind({**record["next_event"], "step": step, "batch": 1}, 1))


def test_a_staying_workers_retry_joins_the_round_its_peers_are_in_for_its_own_shard():
    record = run()
    joined = staying.rejoined(record, old_event(record))
    assert joined == parse_event(shard_event(record["next_event"], 1))
    assert (joined.step, joined.shard, joined.position.batch) == (5, 1, 2)


def test_no_other_event_of_a_committed_step_joins():
    record = run()
    assert staying.rejoined(run(staying_step=4), old_event(record)) is None  # the last commit sent new workers
    assert staying.rejoined(run(reduce="slices", staying_step=None), old_event(record)) is None
    assert staying.rejoined(run(reduce="slices"), old_event(record)) is None  # another mode, whatever the record says
    assert staying.rejoined(record, old_event(record, slice_event)) is None
    finish = run(next_state="finish")
    assert staying.rejoined(finish, parse_event(fit_event({**finish["next_event"], "step": 4}, 1))) is None
    assert staying.rejoined({**record, "next_event": None}, old_event(record)) is None


def test_many_readers_space_their_back_to_back_reads_to_stay_within_the_partitions_reads():
    ports, answers = Ports(), iter(range(10))
    assert staying.wait_for(ports, lambda: next(answers), lambda answer: answer == 5, seconds=60.0, readers=64) == 5
    assert ports.waits == [64 / staying.POLL_READS_PER_SECOND] * 5  # the reads take no time here: all of it paused
    assert not ports.inside


def test_reduce_workers_needs_two_workers_or_more():
    with pytest.raises(LnnInputError, match="reduce workers .* workers is 1: give workers 2 or more"):
        TrainingConfig.from_parameters({**PARAMETERS, "workers": 1})
