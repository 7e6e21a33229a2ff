"""What one local run did (`LocalRunResult`, the content of results.json), and the sums of its deliveries' AWS
requests and S3 bytes that it reports."""

from dataclasses import asdict, dataclass
from typing import Any

from lnn_cli.cloud.chaos import ChaosPlan
from lnn_cli.cloud.runtime import DeliveryRecord
from lnn_core.aws import pricing
from lnn_core.aws.sdk import IoCounter
from lnn_core.protocol import end_message


@dataclass
class LocalRunResult:
    run_id: str
    run: dict[str, Any]  # the run record
    epochs: list[dict[str, Any]]  # the epoch items' figures (RunTable.epoch_figures), epoch 1 first
    notifications: list[dict[str, Any]]  # SNS messages received during the run
    model: bytes | None  # model.npz, when the run succeeded
    io: dict[str, Any]  # requests by service and S3 bytes, over every handler of the run
    deliveries: int  # handler invocations, duplicates and retries included
    failed_events: list[dict[str, Any]]  # Lambda destination records of events given up
    chaos: dict[str, int]  # injected faults and executed step bodies (counted on clean runs too)
    chaos_plan: ChaosPlan | None
    wall_seconds: float
    busiest_step: dict[str, int]  # service -> the most requests one trainer delivery made
    stalls: int = 0

    @property
    def status(self) -> str:
        return self.run["status"]

    @property
    def costs(self) -> list[float]:
        return [item["cost"] for item in self.epochs]

    def per_epoch(self) -> dict[str, Any]:
        """Invocations, requests and S3 bytes per completed epoch (the benchmark's unit)."""
        epochs = max(1, len(self.epochs))
        return {
            "invocations": round(self.run.get("invocations", 0) / epochs, 3),
            "aws_requests": {
                service: round(count / epochs, 3) for service, count in sorted(self.io["requests"].items())
            },
            "s3_bytes_in": round(self.io["s3_bytes_in"] / epochs),
            "s3_bytes_out": round(self.io["s3_bytes_out"] / epochs),
        }

    def results(self) -> dict[str, Any]:
        """The content of results.json."""
        final = self.run.get("final") or {}
        results = {
            "run_id": self.run_id,
            "status": self.status,
            "epochs": len(self.epochs),
            "costs": self.costs,
            "seed": self.run["config"].get("seed"),
            "seconds": final.get("seconds", round(self.wall_seconds, 3)),
            "invocations": self.run.get("invocations", 0),
            "deliveries": self.deliveries,
            "aws_requests": dict(sorted(self.io["requests"].items())),
            "s3_bytes_in": self.io["s3_bytes_in"],
            "s3_bytes_out": self.io["s3_bytes_out"],
            "per_epoch": self.per_epoch(),
            "busiest_step": self.busiest_step,
            "granularity": self.run["config"]["granularity"],
            "config": self.run["config"],
            "aws_cost": pricing.run_cost(self.run, local=True),
        }
        results |= {key: final[key] for key, _, _ in end_message.FIGURES if final.get(key) is not None}
        if final.get("stopped_early_at"):
            results["stopped_early_at"] = final["stopped_early_at"]
        results["warnings"] = list(final.get("warnings") or [])
        if any("test_cost" in item for item in self.epochs):
            results["test_costs"] = {item["epoch"]: item["test_cost"] for item in self.epochs if "test_cost" in item}
        if self.run.get("reason"):
            results["reason"] = self.run["reason"]
        if self.chaos_plan is not None:
            results["chaos"] = {"plan": asdict(self.chaos_plan), **self.chaos}
        return results


def busiest_step(deliveries: list[DeliveryRecord]) -> dict[str, int]:
    """Per service, the most requests a single trainer delivery made."""
    most: dict[str, int] = {}
    for delivery in deliveries:
        if delivery.role == "trainer":
            for service, count in delivery.io["requests"].items():
                most[service] = max(most.get(service, 0), count)
    return dict(sorted(most.items()))


def sum_io(counters) -> dict[str, Any]:
    total = IoCounter()
    for counter in counters:
        total.requests.update(counter.requests)
        total.s3_bytes_in += counter.s3_bytes_in
        total.s3_bytes_out += counter.s3_bytes_out
    return total.snapshot()
