"""The local runtime with several containers per function: deliveries in threads, atomic requests, the clocks."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lnn_cli.cloud.chaos import ChaosPlan
from lnn_cli.cloud.emulator import ACCOUNT_ID, Emulator, running_emulator
from lnn_cli.cloud.local import local_runtime, run_local
from lnn_cli.cloud.runtime import atomic_requests
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.errors import LnnInputError
from tests.integration.conftest import dataset, model_arrays

PARAMETERS = {
    "epochs": 3,
    "learning_rate": 0.5,
    "neurons": [3, 1],
    "activations": ["tanh", "sigmoid"],
    "seed": 2,
    "granularity": "layer",
}


class Rendezvous:
    """A stand-in handler: every delivery waits until `parties` deliveries are running at once."""

    def __init__(self, parties: int, action=None):
        self.barrier, self.action = threading.Barrier(parties, timeout=10), action
        self.lock, self.calls = threading.Lock(), []

    def handle(self, event, context):
        self.barrier.wait()  # broken (an error) unless the deliveries really run at the same time
        result = self.action(event) if self.action else None
        with self.lock:
            self.calls.append((event, context.aws_request_id, threading.get_ident(), result))
        return {"ok": True, "result": result}


def test_containers_have_their_own_handlers_and_ports(stack, log):
    session, outputs = stack
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=4)
    for function in runtime.functions.values():
        handlers = [container.handler for container in function.containers]
        assert len(handlers) == 4 and len({id(handler) for handler in handlers}) == 4
        assert len({id(handler.ports.counter) for handler in handlers}) == 4
        if function.role != "predictor":  # it reads models only: no table
            assert all(
                handler.ports.table.name == outputs.table for handler in handlers
            )  # the environment at build time
        assert all(handler.ports.clock == runtime.now for handler in handlers)


def test_deliveries_run_at_the_same_time_one_per_container(stack, log):
    session, outputs = stack
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=4)
    trainer = runtime.functions["trainer"]
    probe = Rendezvous(4)
    trainer.handler = probe
    for number in range(8):
        runtime.invoke_async(trainer, {"number": number})
    runtime.run()
    assert sorted(call[0]["number"] for call in probe.calls) == list(range(8))
    assert all(record.error is None for record in runtime.deliveries)
    assert {record.container for record in runtime.deliveries} == {0, 1, 2, 3}
    assert len({call[2] for call in probe.calls}) >= 4  # four threads at once


def test_a_duplicate_runs_at_the_same_time_as_its_twin(stack, log):
    session, outputs = stack
    plan = ChaosPlan(duplicate=1.0, seed=1)  # every invoke delivered twice
    from lnn_cli.cloud.chaos import Chaos

    chaos = Chaos(plan)
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=2, chaos=chaos)
    trainer = runtime.functions["trainer"]
    trainer.handler = probe = Rendezvous(2)
    while True:  # an invoke whose copy comes at once (the other half come late)
        runtime.invoke_async(trainer, {"twin": True})
        if runtime._queue.in_order()[-1].due == runtime.clock:
            break
        runtime._queue.remove(runtime._queue.in_order()[-1])
        runtime._queue.remove(runtime._queue.in_order()[-1])
    runtime.run()
    [(_, first, _, _), (_, second, _, _)] = probe.calls
    assert first == second  # twins share the request id


def test_distinct_ids_give_a_duplicate_its_own_request_id(stack, log):
    session, outputs = stack
    from lnn_cli.cloud.chaos import Chaos

    chaos = Chaos(ChaosPlan(duplicate=1.0, distinct_ids=1.0, seed=3))
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=2, chaos=chaos)
    trainer = runtime.functions["trainer"]
    trainer.handler = Rendezvous(1)
    runtime.invoke_async(trainer, {"twin": True})
    runtime.run()
    assert len({record.request_id for record in runtime.deliveries}) == 2 and chaos.counts.distinct_ids == 1


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_handlers_clock_sees_retry_backoffs(stack, log, concurrency):
    session, outputs = stack
    before = time.time()
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=concurrency)
    trainer = runtime.functions["trainer"]
    seen = []

    class FailsTwice:
        def handle(self, event, context):
            seen.append(trainer.containers[0].handler_clock())
            if len(seen) <= 2:
                raise RuntimeError("fails")
            return {}

    for container in trainer.containers:
        container.handler_clock = container.handler.ports.clock
    trainer.handler = FailsTwice()
    runtime.invoke_async(trainer, {})
    runtime.run()
    assert len(seen) == 3 and seen[0] >= before
    assert seen[1] - seen[0] >= 60 and seen[2] - seen[1] >= 120  # Lambda's back-offs, virtual but seen
    assert runtime.now() >= time.time() and runtime.now() >= before + runtime.clock - 0.001


def test_the_handlers_clock_is_monotonic_across_threads(stack, log):
    session, outputs = stack
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=2)
    readings: list[list[float]] = [[] for _ in range(4)]

    def read(index):
        for _ in range(2000):
            readings[index].append(runtime.now())
            runtime._clock.advance_to(runtime.clock + 0.01)

    threads = [threading.Thread(target=read, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(values == sorted(values) for values in readings)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_concurrent_conditional_updates_admit_one_winner(stack, log, concurrency):
    """Eight deliveries try to commit step 1 of one run at the same moment: exactly one conditional update wins."""
    session, outputs = stack
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=concurrency)
    trainer = runtime.functions["trainer"]
    run_id = f"race-{concurrency}"
    tables = [RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter()) for _ in range(8)]
    tables[0].create_run(run_id, {"status": "running", "committed_step": 0, "invocations": 0}, token="test")

    def commit(event):  # each delivery with its own table object, as each Lambda container has
        return tables[event["n"]].transition(run_id, seen_step=0, new_step=1, fields={"winner": event["n"]})

    trainer.handler = probe = Rendezvous(concurrency, action=commit)
    for n in range(8):
        runtime.invoke_async(trainer, {"n": n})
    runtime.run()
    wins = [call for call in probe.calls if call[3]]
    assert len(probe.calls) == 8 and len(wins) == 1
    record = tables[0].get_run(run_id)
    assert record["committed_step"] == 1 and record["invocations"] == 1 and record["winner"] == wins[0][0]["n"]


def test_the_emulator_outlives_a_ctrl_c_until_its_parent_closes_its_input():
    """Ctrl-C reaches the whole process group: killed by it, the moto server turned `lnn local`'s interrupt into a
    connection error (exit 1) before the CLI could unwind; it ends when the CLI closes its standard input."""
    child = subprocess.Popen(
        [sys.executable, "-m", "lnn_cli.cloud.emulator"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        port = int(child.stdout.readline())
        child.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert child.poll() is None
        emulator = Emulator(f"http://localhost:{port}", 0.0)
        assert emulator.session().client("sts").get_caller_identity()["Account"] == ACCOUNT_ID
    finally:
        child.stdin.close()
        assert child.wait(timeout=10) == 0


def test_the_emulator_serializes_requests(tmp_path):
    """The moto server of `lnn local`: concurrent conditional puts of one DynamoDB item admit one winner."""
    with running_emulator(tmp_path / "emulator.log") as emulator:
        session = emulator.session()
        session.client("dynamodb").create_table(
            TableName="race",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        )
        clients = [emulator.session().client("dynamodb") for _ in range(8)]
        barrier, wins = threading.Barrier(8), []

        def put(index):
            barrier.wait()
            try:
                clients[index].put_item(
                    TableName="race",
                    Item={"k": {"S": "one"}, "w": {"N": str(index)}},
                    ConditionExpression="attribute_not_exists(k)",
                )
                wins.append(index)
            except clients[index].exceptions.ConditionalCheckFailedException:
                pass

        threads = [threading.Thread(target=put, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 1


def test_atomic_requests_is_reentrant_and_restores_moto(stack):
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.__call__
    with atomic_requests():
        with atomic_requests():
            assert BotocoreStubber.__call__ is not original
        assert BotocoreStubber.__call__ is not original
    assert BotocoreStubber.__call__ is original


def test_chaos_parses_pause_and_distinct_ids():
    plan = ChaosPlan.parse("pause=0.5,distinct_ids=0.25,seed=3")
    assert plan.pause == 0.5 and plan.distinct_ids == 0.25 and plan.seed == 3
    with pytest.raises(LnnInputError, match="probability"):
        ChaosPlan.parse("pause=2")


@pytest.fixture(scope="module")
def clean(stack, tmp_path_factory):
    session, outputs = stack
    with open(tmp_path_factory.mktemp("clean") / "lambda.log", "w") as stream:
        return run_local(session, outputs, PARAMETERS, dataset()[0], run_id="clean-c1", log_stream=stream)


@pytest.mark.parametrize("seed", [0, *(pytest.param(seed, marks=pytest.mark.slow) for seed in range(1, 4))])
def test_a_chaotic_run_at_concurrency_4_ends_like_the_clean_run(stack, clean, log, seed):
    """Duplicates running beside their twins, crashes, delays and pauses that interleave them: the same run."""
    session, outputs = stack
    plan = ChaosPlan(duplicate=0.5, crash=0.1, delay=0.2, pause=0.3, distinct_ids=0.0, seed=seed)
    result = run_local(
        session, outputs, PARAMETERS, dataset()[0], run_id=f"c4-{seed}", chaos=plan, log_stream=log, concurrency=4
    )
    assert result.status == "succeeded", result.run.get("reason")
    chaotic, reference = model_arrays(result.model), model_arrays(clean.model)
    assert all(
        chaotic[name].tobytes() == reference[name].tobytes() for name in reference if name.startswith(("W", "b"))
    )
    assert result.costs == clean.costs
    assert result.run["invocations"] == clean.run["invocations"]


def test_concurrency_1_keeps_the_order_of_a_seed(stack, log):
    session, outputs = stack
    plan = ChaosPlan(duplicate=0.4, crash=0.3, delay=0.4, seed=5)
    runs = [
        run_local(session, outputs, PARAMETERS, dataset()[0], run_id=f"order-{n}", chaos=plan, log_stream=log)
        for n in range(2)
    ]
    assert runs[0].chaos == runs[1].chaos and runs[0].deliveries == runs[1].deliveries
    assert runs[0].io == runs[1].io


def test_log_lines_of_threads_go_to_the_runtime_log(stack, tmp_path):
    session, outputs = stack
    path = Path(tmp_path / "lambda.log")
    with open(path, "w") as stream:
        result = run_local(
            session, outputs, PARAMETERS, dataset()[0], run_id="logged", log_stream=stream, concurrency=2
        )
    assert result.status == "succeeded"
    text = path.read_text()
    assert '"Steps"' in text or "Steps" in text  # Powertools metrics printed by the threads
    assert "step" in text


def test_lnn_local_runtime_flags():
    import os

    from lnn_cli.parser import build_parser

    args = build_parser().parse_args(["local"])
    assert args.concurrency == (os.cpu_count() or 1) and args.container_cpus == 1
    args = build_parser().parse_args(["local", "--concurrency", "3", "--container-cpus", "2"])
    assert (args.concurrency, args.container_cpus) == (3, 2)
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["local", "--concurrency", "0"])
    assert exit_.value.code == 2


def test_the_blas_cap_holds_while_deliveries_run(stack, log):
    from threadpoolctl import threadpool_info

    session, outputs = stack
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=2, container_cpus=1)
    trainer = runtime.functions["trainer"]
    seen = []

    class Probe:
        def handle(self, event, context):
            seen.append({module["num_threads"] for module in threadpool_info() if module["user_api"] == "blas"})
            return {}

    trainer.handler = Probe()
    runtime.invoke_async(trainer, {})
    runtime.run()
    assert seen == [{1}]


def delivered_at_concurrency_2(stack, log, parameters: dict, run_id: str) -> list:
    """The delivery records of a run of `parameters` through `lnn local`'s path at concurrency 2, which succeeded."""
    session, outputs = stack
    records = []
    result = run_local(
        session,
        outputs,
        parameters,
        dataset()[0],
        run_id=run_id,
        log_stream=log,
        concurrency=2,
        on_delivery=records.append,
    )
    assert result.status == "succeeded", result.run.get("reason")
    return records


def test_a_chain_at_concurrency_2_keeps_to_the_container_that_sent_each_step(stack, log, monkeypatch):
    """A trainer step's event is offered to its sender's container (Lambda's hop outlasts the sender's last
    request): the chain runs every step in one container, so its data is loaded once and its state read from the
    cache. The offer is long here so that a slow sender cannot outlast it on a loaded machine."""
    monkeypatch.setattr("lnn_cli.cloud.runtime.core.SENDER_OFFER_SECONDS", 30.0)
    records = delivered_at_concurrency_2(stack, log, {**PARAMETERS, "granularity": "epoch"}, "offered")
    steps = [record for record in records if record.role == "trainer"]
    assert len(steps) == PARAMETERS["epochs"] + 1  # the start (epoch 1), an epoch each, the finish
    assert {record.container for record in steps} == {steps[0].container}


def test_an_offer_ends_once_the_sender_takes_another_event(stack, log, monkeypatch):
    """A round's two shard events are both offered to the shard that committed the round: it takes one, its own
    (sent first), and the other goes at once to the free container (not after the offer), so every round's shards
    run side by side, and each shard (and the finish's fit of its part) in the container that holds its part."""
    monkeypatch.setattr("lnn_cli.cloud.runtime.core.SENDER_OFFER_SECONDS", 30.0)
    # one invoke after another: the events reach the queue in the order sent (at once, they almost always do)
    monkeypatch.setattr("lnn_cli.cloud.runtime.core.CONCURRENT_REQUESTS", 1)
    records = delivered_at_concurrency_2(stack, log, {**PARAMETERS, "granularity": "epoch", "workers": 2}, "offered-k2")
    rounds, containers = {}, {}
    for record in records:
        if record.role == "trainer" and record.result and record.result.get("shard") is not None:
            if record.result["state"] == "shard":
                rounds.setdefault(record.result["step"], []).append(record.container)
            containers.setdefault(record.result["shard"], set()).add(record.container)  # its fit (the finish's) too
    assert len(rounds) == PARAMETERS["epochs"] and all(sorted(ran) == [0, 1] for ran in rounds.values()), rounds
    assert sorted(map(len, containers.values())) == [1, 1], containers  # each shard kept to one container


def test_an_offer_ends_and_then_waits_for_a_free_container_without_spinning(stack, log, monkeypatch):
    """Events offered to a sender that stays busy: once their offers end, the first goes to the free container at
    once (before the sender is free again); the others, with every container busy, wait for a delivery to end (the
    scheduler sleeps) rather than ask again and again for a free container."""
    monkeypatch.setattr("lnn_cli.cloud.runtime.core.SENDER_OFFER_SECONDS", 0.01)
    session, outputs = stack
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=2)
    trainer = runtime.functions["trainer"]
    picks, pick = [], runtime._pick
    monkeypatch.setattr(runtime, "_pick", lambda: (picks.append(1), pick())[1])

    started = {}

    class Sender:
        def handle(self, event, context):
            started[event.get("number", "first")] = time.monotonic()
            if event.get("first"):
                for number in range(3):
                    runtime.invoke_async(trainer, {"number": number}, sender=trainer.containers[0])
            time.sleep(0.3)
            return {"number": event.get("number")}

    trainer.handler = Sender()
    runtime.invoke_async(trainer, {"first": True})
    runtime.run()
    assert len(runtime.deliveries) == 4 and all(record.error is None for record in runtime.deliveries)
    ran_in = {record.result["number"]: record.container for record in runtime.deliveries}
    assert ran_in[0] == 1 and started[0] - started["first"] < 0.2, (ran_in, started)
    assert len(picks) < 50, f"{len(picks)} picks: the scheduler spun while it waited"


def test_a_delivery_for_any_container_leaves_a_free_sender_to_the_event_offered_to_it(stack, log):
    """Both containers free, an event for any container queued before one offered to container 0: the first takes
    container 1, so that the offered event still finds its sender's container."""
    session, outputs = stack
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=2)
    trainer = runtime.functions["trainer"]

    class Named:
        def handle(self, event, context):
            return {"name": event["name"]}

    trainer.handler = Named()
    runtime.invoke_async(trainer, {"name": "any"})
    runtime.invoke_async(trainer, {"name": "offered"}, sender=trainer.containers[0])
    runtime.run()
    assert {record.result["name"]: record.container for record in runtime.deliveries} == {"any": 1, "offered": 0}
