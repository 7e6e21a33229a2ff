"""This machine's emulator, measured as `projection.AwsAssumptions` measures AWS: the latencies of a small S3 GET and
PUT, the bandwidth of a large GET, the rate of a large PUT and the latency of a DynamoDB request, each timed from the
bench's own process against the emulator the runs use (one HTTP request each over loopback, as the handlers'
requests). Fed to the projection in place of AWS's figures, it must predict the local K = 1 and K = 2 epochs: the
check of the model (issue 19)."""

import dataclasses
import time
from statistics import median

from lnn_cli.bench.projection import MIB, AwsAssumptions

PROBE_PREFIX = "bench/latency-probe"  # S3 keys and a run_id no run uses
SMALL_BYTES = 1024
LARGE_BYTES_AT_LEAST = 16 * MIB  # enough that the transfer, not the request's latency, dominates its time
REPEATS = 20


def _median_seconds(call, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return median(times)


def emulator_assumptions(session, bucket: str, table: str, large_bytes: int) -> AwsAssumptions:
    """`AwsAssumptions` with the emulator's measured S3 GET and PUT latencies (the medians of small ones), the
    bandwidth of a GET and the seconds per MiB of a PUT (`large_bytes` through each, less its latency) and the
    DynamoDB latency (the median of consistent GetItems and UpdateItems of a probe item). The local runtime's invoke
    is an enqueue and its hop a thread's wake-up: both 0 here. The chain's state is read from S3 every step
    (`chain_state_cached` False): locally a K = 1 chain alternates between two containers (docs/performance.md)."""
    s3, dynamodb = session.client("s3"), session.client("dynamodb")
    small, large = b"x" * SMALL_BYTES, b"x" * max(large_bytes, LARGE_BYTES_AT_LEAST)
    small_key, large_key = f"{PROBE_PREFIX}/small", f"{PROBE_PREFIX}/large"
    put_small = _median_seconds(lambda: s3.put_object(Bucket=bucket, Key=small_key, Body=small))
    get_small = _median_seconds(lambda: s3.get_object(Bucket=bucket, Key=small_key)["Body"].read())
    put_large = _median_seconds(lambda: s3.put_object(Bucket=bucket, Key=large_key, Body=large), repeats=5)
    get_large = _median_seconds(lambda: s3.get_object(Bucket=bucket, Key=large_key)["Body"].read(), repeats=5)
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": small_key}, {"Key": large_key}]})
    key = {"run_id": {"S": PROBE_PREFIX}, "epoch": {"N": "-1"}}
    update = _median_seconds(
        lambda: dynamodb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="ADD probes :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    )
    read = _median_seconds(lambda: dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True))
    dynamodb.delete_item(TableName=table, Key=key)
    return dataclasses.replace(
        AwsAssumptions(),
        s3_latency=get_small,
        s3_put_latency=put_small,
        s3_put_seconds_per_mib=max(0.0, put_large - put_small) / (len(large) / MIB),
        bandwidth=len(large) / max(1e-6, get_large - get_small),
        invoke_latency=0.0,
        hop_latency=0.0,
        dynamodb_latency=(update + read) / 2,
        chain_state_cached=False,
    )
