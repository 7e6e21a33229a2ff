"""Lambda entry points. Thin: they build the adapters once per container and hand each event to the logic.

The local runtime and the tests call `build_trainer`/`build_launcher`/`build_watchdog`/`build_predictor` with their own
boto3 session and invoker; everything else is the code that runs in AWS.
"""

import functools
import json
import os
from collections.abc import Callable

import boto3
from aws_lambda_powertools import Logger, Metrics

from lnn_core.aws.ports import Invoker, Ports, S3ObjectStore, _required
from lnn_core.aws.sdk import BOTO_CONFIG, IoCounter
from lnn_core.aws.usage import memory_mb
from lnn_core.launch.launcher import Launcher, LaunchLimits
from lnn_core.predictor import Predictor, PredictorPorts
from lnn_core.protocol.trainer import Trainer
from lnn_core.run_control import StallRules, Watchdog
from lnn_core.sweep.controller import SweepController


def build_trainer(
    *,
    session: boto3.Session | None = None,
    invoker: Invoker | None = None,
    logger: Logger | None = None,
    clock: Callable[[], float] | None = None,
    functions: dict[str, Invoker] | None = None,
) -> Trainer:
    ports = Ports.from_environment(
        invoke_target="AWS_LAMBDA_FUNCTION_NAME", session=session, invoker=invoker, clock=clock, functions=functions
    )
    return Trainer(
        ports,
        logger=logger or Logger(service="lnn"),
        metrics=Metrics(namespace="LNN", service="lnn"),
        memory_mb=memory_mb(None),
    )


def build_launcher(
    *,
    session: boto3.Session | None = None,
    invoker: Invoker | None = None,
    logger: Logger | None = None,
    clock: Callable[[], float] | None = None,
) -> Launcher:
    ports = Ports.from_environment(invoke_target="LNN_TRAINER_FUNCTION", session=session, invoker=invoker, clock=clock)
    defaults = json.loads(os.environ.get("LNN_TRAINING_DEFAULTS") or "{}")
    return Launcher(ports, defaults=defaults, logger=logger or Logger(service="lnn"))


def build_watchdog(
    *,
    session: boto3.Session | None = None,
    invoker: Invoker | None = None,
    logger: Logger | None = None,
    clock: Callable[[], float] | None = None,
    functions: dict[str, Invoker] | None = None,
) -> Watchdog:
    ports = Ports.from_environment(
        invoke_target="LNN_TRAINER_FUNCTION", session=session, invoker=invoker, clock=clock, functions=functions
    )
    rules = StallRules(
        stall_seconds=float(os.environ.get("LNN_STALL_SECONDS", "900")),
        timeout_seconds=float(os.environ.get("LNN_TRAINER_TIMEOUT_SECONDS", "900")),
        event_age_seconds=float(os.environ.get("LNN_EVENT_AGE_SECONDS", "21600")),
    )
    # it drives the sweeps in the bucket (a watchdog without one, as some tests build it, drives none)
    sweeps = SweepController(ports, limits=LaunchLimits.from_environment(os.environ)) if ports.store else None
    return Watchdog(ports, rules=rules, logger=logger or Logger(service="lnn"), sweeps=sweeps)


def build_predictor(
    *,
    session: boto3.Session | None = None,
    invoker: Invoker | None = None,
    logger: Logger | None = None,
    clock: Callable[[], float] | None = None,
) -> Predictor:
    """The PredictLambda: it reads only LNN_BUCKET's runs/<run_id>/model.npz (and invokes nothing)."""
    session = session or boto3.Session()
    counter = IoCounter()
    store = S3ObjectStore(session.client("s3", config=BOTO_CONFIG), _required("LNN_BUCKET"), counter, cache_bytes=0)
    ports = PredictorPorts(store=store, counter=counter, **({"clock": clock} if clock else {}))
    return Predictor(ports, logger=logger or Logger(service="lnn"))


@functools.cache
def _trainer() -> Trainer:
    return build_trainer()


@functools.cache
def _launcher() -> Launcher:
    return build_launcher()


@functools.cache
def _watchdog() -> Watchdog:
    return build_watchdog()


@functools.cache
def _predictor() -> Predictor:
    return build_predictor()


def train(event, context):
    return _trainer().handle(event, context)


def launch(event, context):
    return _launcher().handle(event, context)


def watchdog(event, context):
    return _watchdog().handle(event, context)


def predict(event, context):
    return _predictor().handle(event, context)
