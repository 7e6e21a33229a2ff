"""What one delivery of a function used, added to its run's record so that the run can be priced (`pricing`).

Every delivery is paid for, whatever it did: a duplicate that found its step committed, a crash, a retry. So the
trainer and the launcher measure each delivery from its start to its end (a `finally`) and add it, with an
atomic ADD that no step or status conditions, to the run record's top-level `usage_*` counters, which no part of
the protocol reads. The ADD names the run only if it exists: it never creates a record.

A trainer delivery that sends the next step adds its usage just before that send, so that the invoke stays its
last request but one (`protocol.sending.Send`): the send's requests are counted ahead (`record`'s `ahead`), its
time is not.

An estimate, not a bill: Lambda bills from its own clock (this is the handler's, without the runtime's start-up,
a send that follows the ADD, and the log flush after it); when an ADD's answer is lost the SDK retries it and
that delivery counts twice; a delivery that dies before its `finally` (a timeout, an out-of-memory kill) is not
counted.
"""

import math
import os
import time
from collections import Counter
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lnn_core.aws.sdk import IoCounter

MIB = 2**20  # bytes in a megabyte of Lambda's memory size
DEFAULT_MEMORY_MB = 1024  # the stack's default memory_size (lnn_stack.settings.deployment.MEMORY_SIZE reads it)
USAGE_PREFIX = "usage_"


class DeliveryMeter:
    """Measures one delivery: its wall time and what its ports' counter counted meanwhile."""

    def __init__(self, counter: IoCounter):
        self.counter, self.started, self.before = counter, time.monotonic(), counter.snapshot()

    def usage(self, context: Any, ahead: IoCounter | None = None) -> dict[str, int]:
        """The delivery so far, as the counters its ADD adds (the ADD itself included: one DynamoDB write), and the
        requests it makes after the ADD (`ahead`)."""
        billed_ms = max(1, math.ceil((time.monotonic() - self.started) * 1000))  # Lambda rounds up to 1 ms
        io = self.counter.since(self.before)
        requests, priced = Counter(io["requests"]), Counter(io["priced"])
        if ahead is not None:
            requests.update(ahead.requests)
            priced.update(ahead.priced)
        return {
            "deliveries": 1,
            "mb_ms": billed_ms * memory_mb(context),
            "requests_dynamodb": requests.get("dynamodb", 0) + 1,
            "requests_s3": requests.get("s3", 0),
            "requests_lambda": requests.get("lambda", 0),
            "requests_sns": requests.get("sns", 0),
            "dynamodb_writes": priced["dynamodb_writes"] + 1,
            "dynamodb_item_units": priced["dynamodb_item_units"],
            "s3_reads": priced["s3_reads"],
            "s3_deletes": priced["s3_deletes"],
            "s3_bytes": io["s3_bytes_in"] + io["s3_bytes_out"],
        }

    def record(self, table, run_id: Any, context: Any, log, *, ahead: IoCounter | None = None) -> None:
        """Add the delivery's usage to run `run_id`'s record, with the requests `ahead` it still makes after the ADD.
        Never raises: a failed ADD loses this delivery from the estimate, where raising would have Lambda retry a
        delivery that did its work."""
        if not isinstance(run_id, str) or not run_id:
            return
        usage = self.usage(context, ahead)
        try:
            table.add_usage(run_id, {USAGE_PREFIX + name: value for name, value in usage.items()})
        except (ClientError, BotoCoreError) as error:
            log.warning("usage not recorded", extra={"run_id": run_id, "error": str(error)[:200]})


def memory_mb(context: Any) -> int:
    """The function's memory: the context's (Lambda's), else its environment's, else the stack's default."""
    value = getattr(context, "memory_limit_in_mb", None) or os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    return int(value) if value else DEFAULT_MEMORY_MB
