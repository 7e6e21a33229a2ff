"""What `lnn up`'s background process delivers to the local Lambda runtime, and from which thread.

- `stack_functions`: which of the stack's functions the runtime runs (role -> function name);
- `EventRules`: the deployed EventBridge rules, read back from moto: event patterns and `rate(...)` schedules;
- `LocalStack`: the main loop. Async invokes and rule events queue in the runtime; synchronous invokes, handed over
  by the proxy's request threads, run in the loop's thread; due schedules fire their targets.

`log` writes a line to the process's stderr, which is `up.log`.
"""

import queue
import re
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from lnn_cli.cloud.emulator import ACCOUNT_ID, REGION
from lnn_cli.cloud.runtime import BUILDERS, LocalLambdaRuntime
from lnn_cli.cloud.stack import OUTPUT_KEYS, StackOutputs

RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def log(message: str) -> None:
    """A line of up.log: `lnn up` points the process's stderr at it."""
    print(f"{datetime.now().isoformat(timespec='seconds')} {message}", file=sys.stderr, flush=True)


def _function_name(name_or_arn: str) -> str:
    """A function's name from its name, partial ARN or ARN
    (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`)."""
    parts = name_or_arn.split(":")
    if "function" in parts:
        return parts[parts.index("function") + 1]
    return parts[0]


def stack_functions(session, outputs: StackOutputs) -> dict[str, str]:
    """Role -> function name for the runtime: the three of `StackOutputs`, and any other `...FunctionName` output
    whose role the runtime can build (a PredictLambda's `predictor`, when the stack and the runtime have it)."""
    functions = {
        "trainer": outputs.trainer_function,
        "launcher": outputs.launch_function,
        "watchdog": outputs.watchdog_function,
    }
    if getattr(outputs, "predict_function", None) and "predictor" in BUILDERS:
        functions["predictor"] = outputs.predict_function
    stacks = session.client("cloudformation").describe_stacks(StackName=outputs.stack_name)["Stacks"]
    for output in stacks[0].get("Outputs") or []:
        key = output["OutputKey"]
        if key in OUTPUT_KEYS or not key.endswith("FunctionName") or output["OutputValue"] in functions.values():
            continue
        role = next((role for role in BUILDERS if role not in functions and key.lower().startswith(role[:5])), None)
        if role is None:
            log(f"note: output {key} names a function the local runtime cannot run; its invokes go to moto")
        else:
            functions[role] = output["OutputValue"]
    return functions


class EventRules:
    """The deployed EventBridge rules of the default bus: patterns (matched by moto's `EventPattern`) and rate
    schedules, each with its Lambda targets' function names."""

    def __init__(self, session):
        from moto.events.models import (
            EventPattern,  # moto's own matcher: the wildcard filter included
        )

        events = session.client("events")
        self.patterns: list[tuple[str, Any, list[str]]] = []
        self.schedules: list[tuple[str, str, float, list[str]]] = []  # name, arn, period seconds, functions
        for rule in events.list_rules()["Rules"]:
            if rule.get("State") != "ENABLED":
                continue
            targets = [
                _function_name(target["Arn"])
                for target in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
                if target["Arn"].startswith("arn:aws:lambda:")
            ]
            if rule.get("EventPattern"):
                self.patterns.append((rule["Name"], EventPattern.load(rule["EventPattern"]), targets))
            elif rule.get("ScheduleExpression"):
                match = RATE.match(rule["ScheduleExpression"].strip())
                if match is None:
                    log(
                        f"note: rule {rule['Name']}'s schedule {rule['ScheduleExpression']} is not a rate; "
                        "it never fires here"
                    )
                    continue
                period = int(match[1]) * RATE_UNITS[match[2].rstrip("s")]
                self.schedules.append((rule["Name"], rule["Arn"], float(period), targets))

    def matching(self, event: dict[str, Any]) -> list[tuple[str, list[str]]]:
        return [(name, targets) for name, pattern, targets in self.patterns if pattern.matches_event(event)]


class LocalStack:
    """The runtime behind the proxy: async invokes queue, synchronous ones run in the main loop's thread."""

    def __init__(self, runtime: LocalLambdaRuntime, rules: EventRules):
        self.runtime, self.rules = runtime, rules
        self.roles = {function.name: role for role, function in runtime.functions.items()}
        self._sync: queue.Queue = queue.Queue()
        self._wake = threading.Event()
        self.stopping = threading.Event()
        started = time.monotonic()
        self._next_fire = {name: started + period for name, _, period, _ in rules.schedules}

    def role_of(self, name_or_arn: str) -> str | None:
        return self.roles.get(_function_name(name_or_arn))

    def invoke_async(self, role: str, payload: Any) -> None:
        self.runtime.invoke_async(self.runtime.functions[role], payload)  # thread-safe: under the runtime's lock
        self._wake.set()

    def invoke_sync(self, role: str, payload: Any) -> Any:
        """Run the invoke in the main loop's thread; return its result or raise the handler's error."""
        future: Future = Future()
        self._sync.put((role, payload, future))
        self._wake.set()
        return future.result(timeout=self.runtime.functions[role].timeout_seconds + 60)

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def emit(self, event: dict[str, Any]) -> int:
        """Deliver an EventBridge event to the Lambda targets of the rules it matches (asynchronously, as EventBridge
        invokes Lambda). Returns the number of targets invoked."""
        invoked = 0
        for rule, targets in self.rules.matching(event):
            for name in targets:
                role = self.roles.get(name)
                if role is None:
                    log(f"rule {rule}: target {name} is not a function of the stack; skipped")
                    continue
                log(f"rule {rule}: {event['detail-type']} -> {role}")
                self.invoke_async(role, event)
                invoked += 1
        return invoked

    # ---- the main loop -------------------------------------------------------------------------------------

    def loop(self) -> None:
        while not self.stopping.is_set():
            self._wake.clear()
            self._serve_sync()
            self._fire_schedules()
            if self.runtime.pending:
                try:
                    self.runtime.run(until=self._interrupt)
                except Exception:  # a failure of the runtime itself (a destination's request): log, go on
                    log(f"the runtime failed:\n{traceback.format_exc()}")
                continue
            self._trim()
            due = min(self._next_fire.values(), default=time.monotonic() + 60) - time.monotonic()
            self._wake.wait(timeout=max(0.0, min(due, 60.0)))

    def _interrupt(self) -> bool:
        return self.stopping.is_set() or not self._sync.empty() or self._schedule_due()

    def _serve_sync(self) -> None:
        while not self._sync.empty():
            role, payload, future = self._sync.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self.runtime.invoke(role, payload))
            except BaseException as error:  # the handler's error: Lambda answers it as a function error
                future.set_exception(error)

    def _schedule_due(self) -> bool:
        now = time.monotonic()
        return any(now >= due for due in self._next_fire.values())

    def _fire_schedules(self) -> None:
        now = time.monotonic()
        for name, arn, period, targets in self.rules.schedules:
            if now < self._next_fire[name]:
                continue
            self._next_fire[name] = now + period
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": ACCOUNT_ID,
                "time": iso_now(),
                "region": REGION,
                "resources": [arn],
                "detail": {},
            }
            for target in targets:
                role = self.roles.get(target)
                if role is not None:
                    log(f"rule {name}: scheduled event -> {role}")
                    self.invoke_async(role, event)

    def _trim(self) -> None:
        """Idle: forget the delivery records (a long-lived runtime would otherwise keep one per delivery)."""
        with self.runtime._lock:
            del self.runtime.deliveries[:]
            del self.runtime.failed_events[:-100]


def iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
