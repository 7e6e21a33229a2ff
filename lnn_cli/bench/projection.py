"""The workers job's projection of time and cost per epoch on AWS for K = 1 .. 64 workers (`aws_projection`), from
K = 1's compute per epoch, with its prices and assumed latencies (`AwsAssumptions`)."""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from lnn_core.aws.pricing import price_table
from lnn_core.aws.usage import MIB
from lnn_core.protocol.round_steps import shard_reduces

PROJECTION_WORKERS = (1, 2, 4, 8, 16, 32, 64)
PRICES = price_table()  # us-east-1, arm64: lnn_core.aws.pricing holds the prices and their sources
LIFE_SECONDS = (
    300.0  # a persistent worker's life: the stack's default timeout (settings.deployment.TIMEOUT, which loads aws_cdk)
)
COLD_START_SECONDS = 1.0  # a hand-over's new worker before its first request (assumed)


@dataclass(frozen=True)
class AwsAssumptions:
    """Prices (`lnn_core.aws.pricing`'s default table) and latencies of `aws_projection`. No AWS page states the
    latencies: S3's, DynamoDB's and the bandwidth are the limits issue 19 measured on AWS and asks to plan with; the
    Invoke call and the hop are assumed."""

    memory_mb: int = 1769  # one vCPU (docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html)
    gb_second: float = PRICES.lambda_gb_second  # $ per GB-second
    lambda_request: float = PRICES.lambda_request  # $ per request
    s3_put: float = PRICES.s3_put  # $ per PUT (DELETEs are free)
    s3_get: float = PRICES.s3_get  # $ per GET
    write_unit: float = PRICES.dynamodb_write_unit  # $ per DynamoDB write request unit (on demand)
    read_unit: float = PRICES.dynamodb_read_unit  # $ per DynamoDB read request unit
    s3_latency: float = 0.027  # s per S3 GET (or DELETE) of a small object: the GET p50 issue 19 measured
    s3_put_latency: float = 0.060  # s per S3 PUT of a small object (issue 19: "about 60 ms")
    s3_put_seconds_per_mib: float = 0.020  # s each MiB adds to a PUT (issue 19: "plus 20 ms per MiB")
    bandwidth: float = 75e6  # bytes/s of one function's network (issue 19: "about 75 MB/s sustained")
    invoke_latency: float = 0.030  # s per asynchronous Invoke call (assumed)
    hop_latency: float = 0.050  # s from an accepted async invoke to the handler's start (assumed)
    dynamodb_latency: float = 0.008  # s per DynamoDB request (issue 19: a write's p50 "about 8 ms")
    chain_state_cached: bool = True  # K = 1's step finds the state in its container's cache (no GET)
    handler_overhead: float = 0.0  # s of a delivery's own work besides its compute and its requests (measured)

    def get(self, size: float) -> float:
        """Seconds to GET `size` bytes, in one object or in several at once: L + size / B."""
        return self.s3_latency + size / self.bandwidth

    def put(self, size: float, objects: int = 1) -> float:
        """Seconds to PUT `size` bytes as `objects` objects at once: a PUT's latency, then each object's bytes at
        a PUT's rate or all of them through the function's network, whichever is slower."""
        return self.s3_put_latency + max(size / objects * self.s3_put_seconds_per_mib / MIB, size / self.bandwidth)


def aws_round(
    compute_seconds: float,
    workers: int,
    gradient_bytes: int,
    assumptions: AwsAssumptions = AwsAssumptions(),
    state_bytes: int | None = None,
    memory_mb: int | None = None,
    in_shard: bool = False,
) -> dict:
    """One full-batch round (= one epoch) of K = `workers` on AWS, from K = 1's compute per epoch T1 =
    `compute_seconds`; G = `gradient_bytes`, S = `state_bytes` (gd: the parameters, as large as G).

    With GET(n) = L + n/B an S3 GET of n bytes (L its latency, B the function's bandwidth; several objects at once
    cost one L), PUT(n) = P + n max(r, 1/B) a PUT (P its latency, r its seconds per byte), d the DynamoDB latency,
    i an Invoke call and h the hop from an async invoke to the handler's start, o a delivery's own work besides its
    compute and its requests (decoding the event and the run record, (de)serializing the state and sums, logging:
    CPU time, measured on this machine), the requests being those the runs make (`per_round`):
      K = 1, the chain: compute T1; PUT the state and delete the previous one (L); 5 DynamoDB requests (read the
        run, mark started, epoch item, commit, mark sent); 1 invoke (and a GET of the state when the step runs in
        another container than the last one: `chain_state_cached` False):
            time(1) = T1 + PUT(S) + L + 5 d + i + h + o  (+ GET(S))
      K > 1, the critical path of a round in slices (`lnn_core.protocol.round_steps`): a shard GETs the K
        parameter slices together (G bytes), computes T1 / K, PUTs its sums as two objects at once, makes 6
        DynamoDB requests (read, mark started, read again, barrier, claim, usage) and invokes the K slices together;
        slice j GETs its rows of the state and its range of every shard's sums in one wave (S / K + G bytes), PUTs
        its rows (n objects: one with gd, the default `state_bytes`; else two at once, the optimizer's apart), makes
        6 DynamoDB requests (read, mark started, read again, slice barrier, claim, read again); the completing
        slice then commits: it reads the barrier, GETs the other K - 1 new parameter slices together for the epoch's
        item (G - G/K: its own is in its cache), writes the epoch item,
        commits, deletes the round's objects (L), adds its usage, sends the K shard events together and marks them
        sent (5 DynamoDB requests):
            time(K) = T1/K + GET(G) + PUT(G, 2) + 6 d + i + o                   (a shard)
                    + GET(S/K + G) + PUT(S/K, n) + GET(G - G/K) + L + 11 d + i + o  (the committing slice)
                    + 2 h
        Bytes one function moves: a shard G in and G out, a slice S/K + G in and S/K out, the committing one
        G - G/K more in: 2 G + G/K with gd (S = G), whatever K.
      K > 1 with `in_shard` (a round of small parameters reduced in the shard that completes it, `reduce` auto
        while K G <= 8 MiB: `round_steps.shard_reduces`): that shard, after its own part, fences its reduce (d),
        GETs the other K - 1 shards' sums and the K state slices in one wave ((K - 1) G + S: its own sums are in its
        cache), checks the round is still the next (d), PUTs the 2K new state objects at once, and commits as the
        committing slice does (claim, read, barrier, epoch item, commit: 5 d; the new parameters are in its cache;
        its usage is counted with its part), with one hop a round:
            time(K) = T1/K + GET(G) + PUT(G, 2) + 6 d + o  +  d + GET((K - 1) G + S) + d + PUT(S, 2K) + L + 5 d + i + h
        That shard moves K G + S in and G + S out.
    Cost: the billed durations (the chain's step; K shards and K slices, one of which commits) at `memory_mb`
    (default: the assumptions'), one request per invocation (1; 2K), S3 PUTs (1; (2 + n) K, n the objects of a
    state slice) and GETs (0; 2K^2 + (1 + n) K - 1:
    every ranged GET is a GET; the commit's own slice is cached), DynamoDB write units (7; 8K + 8: a run record of
    about 2 KB costs 2 per write, a barrier item or usage write 1, the epoch item 2) and consistent reads (1;
    4K + 2).
    """
    a, K = assumptions, workers
    S = gradient_bytes if state_bytes is None else state_bytes
    n = 1 if state_bytes is None else 2  # a state slice's objects: gd's rows and update count in one (session 36)
    d = a.dynamodb_latency
    if K == 1:
        compute = compute_seconds
        step = compute + a.put(S) + a.s3_latency + 5 * d + a.invoke_latency + (0 if a.chain_state_cached else a.get(S))
        step += a.handler_overhead
        communication = step - compute + a.hop_latency
        durations, requests, puts, gets, writes, reads = step, 1, 1, 0, 7, 1
    elif in_shard:
        compute = compute_seconds / K
        G = gradient_bytes
        shard = a.get(G) + compute + a.put(G, 2) + 6 * d + a.handler_overhead  # its part, and its usage
        reduce = d + a.get((K - 1) * G + S) + d + a.put(S, n * K) + a.s3_latency + 5 * d + a.invoke_latency
        communication = shard - compute + reduce + a.hop_latency
        durations = K * shard + reduce
        requests, puts, gets, writes, reads = K, 2 * K + n * K, K * K + (2 + n) * K - 2, 4 * K + 10, 2 * K + 3
    else:
        compute = compute_seconds / K
        G = gradient_bytes
        shard = a.get(G) + compute + a.put(G, 2) + 6 * d + a.invoke_latency + a.handler_overhead
        sliced = a.get(S / K + G) + a.put(S / K, n) + 6 * d + a.handler_overhead
        commit = a.get(G - G / K) + a.s3_latency + 5 * d + a.invoke_latency  # its own slice is in its cache
        communication = shard - compute + sliced + commit + 2 * a.hop_latency
        durations = K * (shard + sliced) + commit
        requests, puts, gets, writes, reads = 2 * K, (2 + n) * K, 2 * K * K + (1 + n) * K - 1, 8 * K + 8, 4 * K + 2
    return _priced(
        a, K, compute, communication, memory_mb or a.memory_mb, durations, requests, puts, gets, writes, reads
    )


def _priced(
    a: AwsAssumptions,
    K: int,
    compute: float,
    communication: float,
    memory_mb: int,
    durations: float,
    requests: float,
    puts: float,
    gets: float,
    writes: float,
    reads: float,
) -> dict:
    """A round's row: its time, and its cost from the billed durations and the requests of each service."""
    cost = {
        "lambda": durations * memory_mb / 1024 * a.gb_second + requests * a.lambda_request,
        "s3": puts * a.s3_put + gets * a.s3_get,
        "dynamodb": writes * a.write_unit + reads * a.read_unit,
    }
    return {
        "workers": K,
        "compute": compute,
        "communication": communication,
        "seconds": compute + communication,
        "cost": sum(cost.values()),
        "cost_by_service": cost,
        "memory_mb": memory_mb,
    }


def persistent_round(
    compute_seconds: float,
    workers: int,
    gradient_bytes: int,
    assumptions: AwsAssumptions = AwsAssumptions(),
    memory_mb: int | None = None,
    *,
    poll_interval: float | None = None,
    life_seconds: float = LIFE_SECONDS,
    cold_start: float = COLD_START_SECONDS,
    sums_objects: int = 2,
) -> dict:
    """One round of ScatterReduce by K workers that stay alive across rounds (NOT BUILT: LambdaML's design, see
    docs/persistent-workers.md), gd (the state is the parameters, G bytes). Worker j keeps the whole model and the
    optimizer state of its slice in memory, so a round has no invocation and reads no state object. On the
    critical path: `mark_started` (d); its sums over T1 / K, PUT as `sums_objects` objects at once (PUT(G), as in
    `aws_round`: one object pays a PUT's rate per MiB, several at once the function's bandwidth); its ADD to the
    round's barrier (d), then polls until every worker is in (d, and on average half a poll interval p); bytes
    j/K .. (j+1)/K of every worker's sums, K ranged GETs at once (GET(G)), added in worker order; its slice updated
    and PUT (PUT(G/K)); its ADD to the slices' barrier (d) and the polls (d + p/2); the K slices GET at once
    (GET(G)); worker 0's epoch items and commit (2 d); the others' read that sees the commit (d + p/2), which is the
    next round's first request. Every `life_seconds` (the trainer's timeout) less a round, the K workers hand over
    together: a cold start and the state's GET (`cold_start` + GET(G)), spread over the rounds of a life:
        time(K) = T1/K + PUT(G) + 2 GET(G) + PUT(G/K) + 8 d + 3 p/2 + o + hand-over / rounds per life
    p defaults to d (polls back to back: K/p strongly consistent reads a second on the run's partition, which serves
    3,000: K = 16 at 8 ms is 2,000). Bytes one function moves: 3 G + G/K, whatever K. Billed: the K workers for the
    whole round (they wait while they poll); K requests a life; PUTs (1 + `sums_objects`) K; GETs 2K^2 (every ranged
    GET is a GET), K more with several sums objects (the slice that crosses their boundary reads two), and
    K^2 a life; DynamoDB write units 4K + 6 (K `mark_started` of the 2 KB record, 2K barrier ADDs, the epoch
    items' transaction, the commit) and read units 7K (the record once, and two polls at each of the three waits)."""
    a, K, G = assumptions, workers, gradient_bytes
    d = a.dynamodb_latency
    p = d if poll_interval is None else poll_interval
    compute = compute_seconds / K
    per_round = a.put(G, sums_objects) + 2 * a.get(G) + a.put(G / K) + 8 * d + 1.5 * p + a.handler_overhead
    rounds_per_life = max(1, int(life_seconds // (compute + per_round)) - 1)
    communication = per_round + (cold_start + a.get(G)) / rounds_per_life
    return _priced(
        a,
        K,
        compute,
        communication,
        memory_mb or a.memory_mb,
        K * (compute + communication),
        K / rounds_per_life,
        (1 + sums_objects) * K,
        2 * K * K + (K if sums_objects > 1 else 0) + K * K / rounds_per_life,
        4 * K + 6,
        7 * K,
    )


def staying_round(
    compute_seconds: float,
    workers: int,
    gradient_bytes: int,
    assumptions: AwsAssumptions = AwsAssumptions(),
    memory_mb: int | None = None,
    *,
    poll_interval: float | None = None,
    life_seconds: float = LIFE_SECONDS,
    cold_start: float = COLD_START_SECONDS,
) -> dict:
    """One full-batch round of K workers that stay (`reduce` workers, `lnn_core.protocol.staying`: built in session
    36), gd (the state is the parameters, G bytes), as the built protocol makes it. On the critical path: the
    compute over T1 / K (the new parameters are in every worker's cache: the others
    read them while the commit was made, the committer for its epoch item), the check that the round is still the
    next (d), the sums PUT as two objects at once (PUT(G, 2)), the barrier's ADD (d); the others' read that sees
    the barrier complete (d, and half a poll interval p); slice j: the K ranged GETs of its range of every
    worker's sums at once (GET(G): its rows of the state are in its cache), the check (d), its rows PUT as one
    object (PUT(G/K): with gd, its rows and the update count in one), the ADD (d); the committer: its claim and
    the check (2 d: the barrier's losses are those it read), the other K - 1 new parameter slices (GET(G - G/K)),
    the epoch items' transaction and the commit (2 d), while the others read the same slices and then the record
    until the commit shows (d + p/2: that read is their next round's fence; the committer goes on with the record
    it wrote, fenced by a write in that time, and deletes the round's objects while it next waits); a delivery's
    own work o; and every life (the trainer's timeout, 300 s, less three rounds and 20 s), a hand-over to K new
    invocations (a cold start, a hop and the parameters' GET), spread over its rounds:
        time(K) = T1/K + PUT(G, 2) + GET(G) + PUT(G/K) + GET(G - G/K) + 10 d + p + o + hand-over / rounds
    p defaults to d: a wait's first 64 reads go back to back (`staying.FAST_POLLS`). Billed: the K
    workers for the whole round; K / rounds-per-life requests; 3 K PUTs; K^2 + K (K - 1) GETs (every ranged GET is
    a GET) and K a life; DynamoDB write units 4 K + 6 (each worker's fence of the 2 KB record, 2 ADDs; the
    committer's claim, epoch items and commit) and read units 6 K + 4 (the checks, the two waits' reads of the
    barrier and the record, the commit's check)."""
    a, K, G = assumptions, workers, gradient_bytes
    d = a.dynamodb_latency
    p = d if poll_interval is None else poll_interval
    compute = compute_seconds / K
    per_round = a.put(G, 2) + a.get(G) + a.put(G / K) + a.get(G - G / K) + 10 * d + p + a.handler_overhead
    rounds_per_life = max(1, int((life_seconds - 20.0) // (compute + per_round)) - 3)
    communication = per_round + (cold_start + a.hop_latency + a.get(G)) / rounds_per_life
    return _priced(
        a,
        K,
        compute,
        communication,
        memory_mb or a.memory_mb,
        K * (compute + communication),
        K / rounds_per_life,
        3 * K,
        K * K + K * (K - 1) + K / rounds_per_life,
        4 * K + 6,
        6 * K + 4,
    )


def persistent_round_with_tails(
    compute_seconds: float,
    workers: int,
    gradient_bytes: int,
    assumptions: AwsAssumptions = AwsAssumptions(),
    *,
    spread: float,
    poll_interval: float | None = None,
    sums_objects: int = 2,
    life_seconds: float = LIFE_SECONDS,
    cold_start: float = COLD_START_SECONDS,
    rounds: int = 4000,
    seed: int = 0,
) -> float:
    """The mean seconds of `persistent_round`'s round (its compute included) when every request's latency varies:
    each S3 and DynamoDB latency of each request of each worker drawn from a lognormal whose median is the assumed
    latency and whose sigma is `spread` (0.5: a p99 of 3.2 times the median), each poll's wait uniform in 0 .. p.
    The bytes' times, the compute and a delivery's own work do not vary. A round waits three times for the slowest
    of K workers (the two barriers and worker 0's commit), and a worker's K concurrent GETs for the slowest of K;
    the mean latencies of `persistent_round` see neither. With `spread` 0 and no polls it is `persistent_round`'s
    "seconds"."""
    a, K, G = assumptions, workers, gradient_bytes
    p = a.dynamodb_latency if poll_interval is None else poll_interval
    rng = np.random.default_rng(seed)

    def latency(median: float, *shape: int) -> np.ndarray:
        return (
            median * rng.lognormal(0.0, spread, size=(rounds, *shape)) if spread else np.full((rounds, *shape), median)
        )

    def wait(*shape: int) -> np.ndarray:  # a poll that sees the change, and the part of an interval before it
        return latency(a.dynamodb_latency, *shape) + rng.uniform(0.0, p, size=(rounds, *shape))

    d, compute = a.dynamodb_latency, compute_seconds / K
    sums_bytes, slice_bytes = a.put(G, sums_objects) - a.s3_put_latency, a.put(G / K) - a.s3_put_latency
    # mark_started, the compute, the sums' PUT (its objects at once), the ADD: the barrier waits for the last worker
    first = latency(d, K) + compute + latency(a.s3_put_latency, K, sums_objects).max(axis=2) + sums_bytes
    first = (first + latency(d, K)).max(axis=1)
    # the poll, slice j of the K sums (K ranged GETs at once), its update, its PUT, the ADD: the second barrier
    second = wait(K) + latency(a.s3_latency, K, K).max(axis=2) + G / a.bandwidth + latency(a.s3_put_latency, K)
    second = (second + slice_bytes + latency(d, K)).max(axis=1)
    # the poll, the K slices (K GETs at once); worker 0's epoch items and commit; each other worker's read that
    # sees the commit, once it has its slices and the commit is made
    gathered = wait(K) + latency(a.s3_latency, K, K).max(axis=2) + G / a.bandwidth
    commit = gathered[:, 0] + latency(d) + latency(d)
    third = (np.maximum(gathered[:, 1:], commit[:, None]) + wait(K - 1)).max(axis=1)
    seconds = float(np.mean(first + second + third)) + a.handler_overhead  # the compute included
    rounds_per_life = max(1, int(life_seconds // seconds) - 1)
    return seconds + (cold_start + a.get(G)) / rounds_per_life


def with_mean_latencies(assumptions: AwsAssumptions, spread: float) -> AwsAssumptions:
    """`assumptions` with every S3 and DynamoDB latency its lognormal mean (the median times exp(spread^2 / 2)): a
    chain of single requests (K = 1's) waits for no slowest of many, only for each request's mean."""
    scale = math.exp(spread**2 / 2)
    latencies = ("s3_latency", "s3_put_latency", "dynamodb_latency")  # those that vary; the Invoke and hop do not
    return dataclasses.replace(assumptions, **{name: getattr(assumptions, name) * scale for name in latencies})


TAIL_SPREADS = (0.25, 0.5)  # lognormal sigmas of `tail_speedups`: a p99 of 1.8 and 3.2 times the median


def tail_speedups(
    compute_seconds: float, gradient_bytes: int, assumptions: AwsAssumptions, workers: tuple[int, ...]
) -> dict[float, dict[int, float]]:
    """Speedups per epoch of workers alive across rounds over K = 1's chain when latencies vary
    (`persistent_round_with_tails`, each of `TAIL_SPREADS`): spread -> K -> speedup."""
    rows = {}
    for spread in TAIL_SPREADS:
        chain = aws_round(compute_seconds, 1, gradient_bytes, with_mean_latencies(assumptions, spread))["seconds"]
        rows[spread] = {
            K: chain / persistent_round_with_tails(compute_seconds, K, gradient_bytes, assumptions, spread=spread)
            for K in workers
            if K > 1
        }
    return rows


def aws_projection(
    compute_seconds: float,
    gradient_bytes: int,
    workers: tuple[int, ...] = PROJECTION_WORKERS,
    assumptions: AwsAssumptions = AwsAssumptions(),
    memory_mb: dict[int, int] | None = None,
    design: str = "built",
) -> dict:
    """`aws_round` (`design` "built", LNN's round: in slices, or in its shard where `reduce` auto takes it),
    `staying_round` ("staying", `reduce` workers) or `persistent_round` ("persistent", the ideal design of
    docs/persistent-workers.md, not built) for each K, at `memory_mb[K]` (default: the assumptions'), each
    with its speedup and its cost over K = 1 (LNN's chain in every design), and the K of the least time per epoch."""

    def round_at(K: int) -> dict:
        memory = (memory_mb or {}).get(K)
        if K == 1 or design == "built":  # the built round as `reduce` auto takes it at this K
            in_shard = K > 1 and shard_reduces("auto", K, gradient_bytes)
            return aws_round(compute_seconds, K, gradient_bytes, assumptions, memory_mb=memory, in_shard=in_shard)
        return {"persistent": persistent_round, "staying": staying_round}[design](
            compute_seconds, K, gradient_bytes, assumptions, memory_mb=memory
        )

    rows = [round_at(K) for K in workers]
    for row in rows:
        row["speedup"] = rows[0]["seconds"] / row["seconds"]
        row["cost_ratio"] = row["cost"] / rows[0]["cost"]
    return {"design": design, "rows": rows, "best_workers": min(rows, key=lambda row: row["seconds"])["workers"]}
