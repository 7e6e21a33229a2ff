"""Requests sent together (`ports.RequestFanOut`) and the sequential round trips counted from a counter's trace."""

import contextvars
import threading
import time

import boto3
import pytest
from moto import mock_aws

from lnn_core.aws.ports import RequestFanOut
from lnn_core.aws.sdk import IoCounter, round_trips, trace_requests
from tests.conftest import REGION


def test_a_fan_out_answers_in_the_items_order_whatever_order_they_complete_in():
    running, most = [0], [0]
    lock = threading.Lock()

    def slow(item):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02 * (5 - item))  # the last item completes first
        with lock:
            running[0] -= 1
        return item * 10

    assert RequestFanOut(8).map(slow, range(5)) == [0, 10, 20, 30, 40]
    assert most[0] == 5  # all in flight at once
    most[0] = 0
    assert RequestFanOut(2).map(slow, range(5)) == [0, 10, 20, 30, 40] and most[0] == 2  # at most its width


def test_a_fan_out_of_width_one_runs_in_the_callers_thread_in_order():
    seen = []
    answers = RequestFanOut(1).map(lambda item: seen.append((item, threading.current_thread())) or item, [3, 1, 2])
    assert answers == [3, 1, 2]
    assert seen == [(3, threading.current_thread()), (1, threading.current_thread()), (2, threading.current_thread())]


class Died(BaseException):
    """A process that dies mid-call (as the chaos harness's crash): not an Exception."""


@pytest.mark.parametrize("error", [ValueError("invoke refused"), Died()])
def test_a_fan_out_runs_every_call_then_raises_the_first_error_in_the_items_order(error):
    done = []

    def call(item):
        time.sleep(0.01 * item)
        if item in (1, 3):
            raise type(error)(f"item {item}")
        done.append(item)

    with pytest.raises(type(error), match="item 1"):
        RequestFanOut(8).map(call, range(5))
    assert sorted(done) == [0, 2, 4]  # a failure does not stop the others, nor hide behind their success


def test_a_fan_outs_calls_see_and_share_the_callers_context():
    state = contextvars.ContextVar("state")
    shared = {"crashes": 0}
    state.set(shared)

    def call(item):
        state.get()["crashes"] += 1  # a mutable object in the context: shared by the delivery's threads
        return state.get() is shared

    assert RequestFanOut(4).map(call, range(4)) == [True] * 4 and shared["crashes"] == 4


def test_round_trips_count_requests_sent_together_once():
    serial = [("s3", float(i), i + 0.5) for i in range(6)]
    together = [("s3", 0.0 + i * 0.01, 1.0 + i * 0.01) for i in range(6)]
    assert round_trips(serial) == {"s3": 6} and round_trips(together) == {"s3": 1}
    # two waves of three, then one request; DynamoDB apart
    waves = [
        ("s3", 0.0, 1.0),
        ("s3", 0.1, 1.1),
        ("s3", 0.2, 0.9),
        ("s3", 1.2, 2.0),
        ("s3", 1.3, 2.1),
        ("s3", 1.25, 2.2),
        ("s3", 3.0, 3.1),
        ("dynamodb", 2.5, 2.6),
    ]
    assert round_trips(waves) == {"dynamodb": 1, "s3": 3}
    assert round_trips([]) == {}
    # a wave's requests are one span however short each is (local invokes: an enqueue, done before the next starts)
    wave, other = object(), object()
    enqueued = [("lambda", i * 0.1, i * 0.1 + 0.01, wave) for i in range(8)]
    assert round_trips(enqueued) == {"lambda": 1} and round_trips([span[:3] for span in enqueued]) == {"lambda": 8}
    assert round_trips(enqueued + [("lambda", 2.0, 2.1, other), ("lambda", 2.05, 2.2, other)]) == {"lambda": 2}


def test_a_fan_out_marks_each_wave_of_its_width_in_the_trace():
    counter = IoCounter()
    RequestFanOut(4).map(lambda item: counter.record("lambda", item, item + 0.001), range(10))
    assert len({span[3] for span in counter.trace}) == 3  # waves of 4, 4 and 2
    assert counter.since({"requests": {}, "s3_bytes_in": 0, "s3_bytes_out": 0, "priced": {}, "traced": 0})[
        "round_trips"
    ] == {"lambda": 3}
    RequestFanOut(1).map(lambda item: counter.record("s3", item, item + 0.5), range(3))
    assert round_trips([span for span in counter.trace if span[0] == "s3"]) == {"s3": 3}  # one after another


def test_a_counter_counts_exactly_from_many_threads_and_traces_since_a_snapshot():
    # Under CPython 3.11's GIL these increments happen not to interleave even unlocked; the lock is what keeps them
    # exact where they do (a free-threaded Python), which this test then checks.
    counter = IoCounter()
    before = counter.snapshot()

    def work(_):
        for _ in range(20_000):
            counter.count("s3", s3_reads=1)
            counter.add_bytes(s3_in=1)
        counter.record("s3", 1.0, 2.0)

    RequestFanOut(8).map(work, range(8))
    io = counter.since(before)
    assert io["requests"] == {"s3": 160_000} and io["priced"]["s3_reads"] == 160_000 and io["s3_bytes_in"] == 160_000
    assert io["round_trips"] == {"s3": 1}  # eight spans at the same time
    assert counter.since(counter.snapshot())["round_trips"] == {}


def test_a_traced_clients_calls_land_in_the_trace_even_when_they_fail(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        counter = IoCounter()
        s3 = trace_requests(session.client("s3"), counter)
        untraced = session.client("s3")
        before = counter.snapshot()
        s3.create_bucket(Bucket="traced-bucket")
        untraced.list_buckets()  # another client of the same session is not traced
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="traced-bucket", Key="missing")
        assert counter.traced == 2 and counter.since(before)["round_trips"] == {"s3": 2}
        assert all(
            service == "s3" and started <= ended and wave is None for service, started, ended, wave in counter.trace
        )
