"""Workers that stay: a wait's polls and its limit, and which event of a committed step joins the staying workers."""

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
    """A clock that moves only by the waits, and the waits made."""

    def __init__(self):
        self.now, self.waits = 1000.0, []

    def clock(self):
        return self.now

    def wait(self, seconds):
        self.waits.append(seconds)
        self.now += seconds


def test_a_wait_reads_until_its_answer_comes_pausing_longer_each_time_up_to_a_limit():
    ports, answers = Ports(), iter(range(40))
    assert staying.wait_for(ports, lambda: next(answers), lambda answer: answer == 30, seconds=1e6) == 30
    assert len(ports.waits) == 30 and ports.waits[0] == staying.FIRST_POLL_SECONDS
    assert all(
        later == min(earlier * 1.5, staying.LAST_POLL_SECONDS) for earlier, later in zip(ports.waits, ports.waits[1:])
    )
    assert ports.waits[-1] == staying.LAST_POLL_SECONDS


def test_a_wait_answers_at_once_without_pausing_when_the_first_read_is_the_answer():
    ports = Ports()
    assert staying.wait_for(ports, lambda: "in", lambda answer: answer == "in", seconds=0.0) == "in"
    assert ports.waits == []


def test_a_wait_ends_with_none_once_its_limit_passed_on_the_ports_clock():
    ports, reads = Ports(), []
    assert staying.wait_for(ports, lambda: reads.append(ports.now), lambda answer: False, seconds=3.0) is None
    assert reads[-1] >= 1003.0 > reads[-2]  # one read at or after the limit, none after it


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
