"""What a run cost in dollars: the usage its deliveries added to its run record (`usage`), priced from one named,
dated table of AWS list prices. The one home of LNN's prices (docs/costs.md explains the estimate)."""

import math
from dataclasses import dataclass
from typing import Any

from lnn_core.aws.codec import item_write_units
from lnn_core.aws.usage import USAGE_PREFIX

WRITE_UNITS_PER_READ_UNIT = 4  # a write unit covers 1 KB of an item, a strongly consistent read unit 4 KB
TRANSACTION_FACTOR = 2  # a transactional write costs two write request units per KB


@dataclass(frozen=True)
class PriceTable:
    """On-demand list prices in dollars, per unit of what LNN uses. Storage is left out: scratch objects expire
    after 7 days and a run's objects and items cost cents per month at most."""

    region: str
    architecture: str
    dated: str  # when the prices were read from the pages below
    lambda_gb_second: float
    lambda_request: float
    dynamodb_write_unit: float
    dynamodb_read_unit: float
    s3_put: float  # PUT, COPY, POST, LIST (DeleteObjects is free)
    s3_get: float  # GET, HEAD
    s3_transfer_per_gb: float  # between S3 and Lambda in the same region: free
    sns_publish: float

    @property
    def name(self) -> str:
        return f"{self.region}-{self.architecture}"

    @property
    def label(self) -> str:
        return f"{self.region} {self.architecture} list prices of {self.dated}"


# Sources, read on the date in each table: aws.amazon.com/lambda/pricing, /dynamodb/pricing/on-demand,
# /s3/pricing, /sns/pricing. Lambda's first tier (up to 6 billion arm64 GB-seconds a month); DynamoDB's on-demand
# prices after AWS halved them on 1 Nov 2024; SNS standard topics, after the first million publishes a month.
# eu-west-1's DynamoDB prices are half of its earlier $1.4135 and $0.283 per million: check them before relying on them.
_US_EAST_1 = dict(
    region="us-east-1",
    dated="2026-12-05",
    lambda_request=0.20e-6,
    dynamodb_write_unit=0.625e-6,
    dynamodb_read_unit=0.125e-6,
    s3_put=0.005e-3,
    s3_get=0.0004e-3,
    s3_transfer_per_gb=0.0,
    sns_publish=0.50e-6,
)
PRICE_TABLES = {
    table.name: table
    for table in (
        PriceTable(architecture="arm64", lambda_gb_second=0.0000133334, **_US_EAST_1),
        PriceTable(architecture="x86_64", lambda_gb_second=0.0000166667, **_US_EAST_1),
        PriceTable(
            region="eu-west-1",
            architecture="arm64",
            dated="2026-12-05",
            lambda_gb_second=0.0000133334,
            lambda_request=0.20e-6,
            dynamodb_write_unit=0.7068e-6,
            dynamodb_read_unit=0.1415e-6,
            s3_put=0.005e-3,
            s3_get=0.0004e-3,
            s3_transfer_per_gb=0.0,
            sns_publish=0.50e-6,
        ),
    )
}
DEFAULT_PRICES = "us-east-1-arm64"  # the stack's functions are arm64 (lnn_stack)


def price_table(name: str | None = None) -> PriceTable:
    """The table named `name` (e.g. "eu-west-1-arm64"; a bare region takes its arm64 table); None: the default."""
    name = name or DEFAULT_PRICES
    table = PRICE_TABLES.get(name) or PRICE_TABLES.get(f"{name}-arm64")
    if table is None:
        raise ValueError(f"no price table {name!r}; known: {', '.join(PRICE_TABLES)}")
    return table


def run_cost(run: dict[str, Any], *, table: str | None = None, local: bool = False) -> dict[str, Any] | None:
    """A run's usage and its estimate in dollars, or None when its record has no usage (a run of an earlier release).
    `local`: the usage was measured on the local stack (moto), so the label says it is AWS's price of those
    durations."""
    usage = {key[len(USAGE_PREFIX) :]: int(value) for key, value in run.items() if key.startswith(USAGE_PREFIX)}
    if not usage.get("deliveries"):
        return None
    prices = price_table(table)
    requests = {service: usage.get(f"requests_{service}", 0) for service in ("dynamodb", "s3", "lambda", "sns")}
    gb_seconds = usage.get("mb_ms", 0) / 1024 / 1000
    # every DynamoDB request but the epoch items' transactions reads or writes the run record: priced at its size
    record_units, writes = item_write_units(run), usage.get("dynamodb_writes", 0)
    write_units = writes * record_units + TRANSACTION_FACTOR * usage.get("dynamodb_item_units", 0)
    read_units = (requests["dynamodb"] - writes) * math.ceil(record_units / WRITE_UNITS_PER_READ_UNIT)
    s3_gets, s3_deletes = usage.get("s3_reads", 0), usage.get("s3_deletes", 0)
    s3_bytes = usage.get("s3_bytes", 0)
    dollars = {
        "lambda": gb_seconds * prices.lambda_gb_second + usage["deliveries"] * prices.lambda_request,
        "dynamodb": write_units * prices.dynamodb_write_unit + read_units * prices.dynamodb_read_unit,
        "s3": (requests["s3"] - s3_gets - s3_deletes) * prices.s3_put
        + s3_gets * prices.s3_get
        + s3_bytes / 1e9 * prices.s3_transfer_per_gb,
        "sns": requests["sns"] * prices.sns_publish,
    }
    measured = "the locally measured usage (moto)" if local else "the measured usage"
    return {
        "dollars": sum(dollars.values()),
        "dollars_by_service": dollars,
        "lambda_gb_seconds": gb_seconds,
        "deliveries": usage["deliveries"],
        "requests": requests,
        "dynamodb_units": {"write": write_units, "read": read_units},
        "s3_bytes": s3_bytes,
        "usage": usage,  # the counters recorded, from which the rest is computed
        "price_table": prices.name,
        "label": f"AWS estimate for {measured}, {prices.label}",
    }


def cost_text(cost: dict[str, Any] | None) -> str:
    """One line: the dollars, the GB-seconds and deliveries they come from, and the label."""
    if cost is None:
        return "no usage recorded (a run of an earlier release)"
    return (
        f"${cost['dollars']:.6f} ({cost['lambda_gb_seconds']:.3f} Lambda GB-s, {cost['deliveries']} deliveries; "
        f"{cost['label']})"
    )
