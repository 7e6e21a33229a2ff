"""The TrainerLambda's logic: one step of a run per invocation, exactly once in effect.

A step is a computation over inputs addressed by (run_id, step position), followed by effects keyed by that step:

  1. read the run record (epoch 0 of the results table);
  2. drop the delivery unless this is the run's next step (`step == committed_step + 1`), and record that a
     delivery started it (a conditional write: the watchdog's proof of life, and a late twin's cue to stop);
  3. compute the step's outputs: pure functions of immutable inputs, so every attempt computes the same bytes;
  4. write the outputs to S3 and the epoch items to DynamoDB (overwrites with identical content are harmless);
  5. commit: one conditional write moves `committed_step` from step - 1 to step and gives the winner a lease on
     sending the next event. Exactly one delivery wins;
  6. the winner sends the next step's event and records `invoked_step`; a delivery that finds the step committed
     but the next event unsent re-sends it only after winning a conditional claim, once no live lease holds it,
     so duplicates cannot start a second chain;
  7. a terminal step claims, publishes and records the one SNS message.

See the README's "Exactly once" section for the invariant and its one inherent limit.
"""

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import control, network
from .codec import arrays_to_npz, item_write_units, npz_to_arrays
from .config import MAX_EPOCHS, MAX_LAYERS, TrainingConfig, layer_map
from .dataset import TrainingData, load_training_data
from .errors import LnnInputError, RunFailure
from .ports import Ports, now, send_lease
from .schedule import STATES, Position, next_position

CHECKPOINT_EVERY = 100  # epochs whose parameters are kept (not scratch), besides the last
ITEM_WEIGHTS_LIMIT = 2_000  # parameters stored as DynamoDB lists (~40 KB of the 400 KB item limit); above: norms and a checkpoint key
AUTO_SAFETY_SECONDS = 10.0
AUTO_MAX_EPOCHS_PER_STEP = 2500  # bounds a step's memory (one item per epoch) and its commit
BATCH_WRITE_SECONDS = 0.1  # budgeted per request of 25 epoch items: the commit's writes must fit in the invocation too
PARTITION_WRITE_UNITS_PER_SECOND = 1000  # DynamoDB's limit per partition; all of a run's items share one key
DIVERGED_MAGNITUDE = 1e100  # weights this large have diverged (and DynamoDB numbers end at 1e126)


@dataclass(frozen=True)
class StepEvent:
    """A validated trainer event."""

    run_id: str
    step: int
    position: Position
    epochs: int
    layers: int
    neurons: tuple[int, ...]
    activations: tuple[str, ...]
    learning_rate: float
    granularity: str


@dataclass
class StepResult:
    """What a step body produced; the protocol turns it into effects."""

    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # S3 key -> arrays
    checkpoints: set[str] = field(default_factory=set)  # output keys that are kept, not scratch
    epoch_items: list[dict[str, Any]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)  # run record updates
    last_epoch_done: int | None = None
    obsolete: list[str] = field(default_factory=list)  # S3 keys no later step reads
    final: dict[str, Any] | None = None


@dataclass(frozen=True)
class PreparedData:
    """Training data in the internal layout: examples as columns."""

    data: TrainingData
    X: np.ndarray  # (n0, m)
    Y: np.ndarray  # (1, m) or (C, m)


class Trainer:
    def __init__(self, ports: Ports, *, logger, metrics=None):
        self.ports, self.log, self.metrics = ports, logger, metrics
        self._data: dict[tuple[str, str], PreparedData] = {}  # warm-container cache, keyed by (key, ETag)

    # ---- the protocol -------------------------------------------------------------------------------------

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        started, io_before = time.monotonic(), self.ports.counter.snapshot()
        outcome = self._handle(event, context)
        costs = outcome.pop("epoch_costs", [])  # one per epoch this step completed (thousands in auto granularity)
        if costs:
            outcome |= {"epochs_completed": len(costs), "cost": costs[-1]}
        io = self.ports.counter.since(io_before)
        log = self.log.error if outcome["outcome"] in ("failed", "rejected") else self.log.info  # a reason to read
        log("step", extra={**outcome, "duration_ms": round((time.monotonic() - started) * 1000, 1), "io": io})
        if self.metrics is not None:
            for cost in costs:  # Powertools flushes every 100 values on its own
                self.metrics.add_metric(name="Cost", unit="None", value=cost)
            self.metrics.add_metric(name="Steps", unit="Count", value=1)  # last, so the final flush is never empty
            self.metrics.flush_metrics()
        return outcome

    def _handle(self, event: Any, context: Any) -> dict[str, Any]:
        # Claims are held per delivery, not per request id: AWS does not promise twins distinct request ids.
        claimant = f"{getattr(context, 'aws_request_id', None) or 'direct'}/{uuid.uuid4().hex[:12]}"
        try:
            step_event = parse_event(event)
        except LnnInputError as error:
            return self._reject(event, f"bad event: {error}", claimant, context)
        ports, run_id = self.ports, step_event.run_id
        summary = {
            "run_id": run_id,
            "step": step_event.step,
            "state": step_event.position.state,
            "epoch": step_event.position.epoch,
            "layer": step_event.position.layer,
        }
        run = ports.table.get_run(run_id)
        if run is None:
            return {**summary, "outcome": "rejected", "reason": f"unknown run {run_id}; nothing was touched"}
        if run["status"] != "running":
            control.catch_up(ports, run, claimant=claimant, context=context)
            return {**summary, "outcome": "ignored", "reason": f"run is {run['status']}"}
        committed = run["committed_step"]
        if step_event.step <= committed:
            resent = step_event.step == committed and control.catch_up(ports, run, claimant=claimant, context=context)
            return {**summary, "outcome": "resent" if resent else "duplicate"}
        mismatch = schedule_mismatch(step_event, run)
        if mismatch:
            return {**summary, **control.fail_run(ports, run, f"bad event: {mismatch}", claimant=claimant, context=context)}
        if run.get("stop_requested"):
            return {**summary, **control.end_run(ports, run, status="stopped", reason="stopped on request",
                                                 claimant=claimant, context=context)}
        if step_event.step > run["step_bound"]:
            return {**summary, **control.fail_run(ports, run, f"step {step_event.step} exceeds the run's bound",
                                                  claimant=claimant, context=context)}
        if not ports.table.mark_started(run_id, step_event.step, at=ports.clock()):
            return {**summary, "outcome": "duplicate"}  # a twin committed it meanwhile
        config = TrainingConfig.from_parameters(run["config"])
        try:
            result = self._execute(step_event.position, config, run, context)
        except RunFailure as failure:
            if not self._still_next(run_id, step_event.step):
                return {**summary, "outcome": "duplicate"}  # a late twin read what the winner already cleaned up
            return {**summary, **control.fail_run(ports, run, str(failure), claimant=claimant, context=context)}
        return {**summary, **self._commit(step_event, config, run, result, claimant, context)}

    def _commit(self, step_event: StepEvent, config: TrainingConfig, run: dict, result: StepResult, claimant: str,
                context: Any) -> dict[str, Any]:
        ports, run_id, position = self.ports, step_event.run_id, step_event.position
        for key, arrays in result.outputs.items():
            ports.store.put_bytes(key, arrays_to_npz(arrays), scratch=key not in result.checkpoints)
        if result.epoch_items:
            ports.table.put_epoch_items(run_id, result.epoch_items)
        following = next_position(position, config, last_epoch_done=result.last_epoch_done)
        clock = ports.clock()
        fields = {**result.fields, "next_event": make_event(run_id, config, following) if following else None,
                  "heartbeat_at": clock, "committed_at": clock, "committed_by": claimant}
        if following:  # the commit is the winner's claim on sending the next event
            fields["send_lease"] = send_lease(following.step, claimant=claimant, until=control.lease_until(ports, context))
        if result.final is not None:
            fields |= {"status": "succeeded", "final": result.final, "finished_at": now(), "notified": False}
        if not ports.table.transition(run_id, seen_step=run["committed_step"], new_step=step_event.step, fields=fields):
            # A twin committed first, or our commit was applied and only its answer lost (boto3 then retried it)
            latest = ports.table.get_run(run_id)
            if latest["committed_step"] != step_event.step:
                return {"outcome": "duplicate"}
            if latest.get("committed_by") != claimant:  # a twin's commit: finish what it may have left undone
                if result.obsolete:  # the step's obsolete keys are the same whoever committed it
                    ports.store.delete_keys(result.obsolete)
                resent = control.catch_up(ports, latest, claimant=claimant, context=context)
                return {"outcome": "resent" if resent else "duplicate"}
        if following:  # ours: the commit holds our lease on sending
            control.send(ports, run_id, fields["next_event"])
        if result.final is not None:
            control.ensure_notified(ports, {**run, **fields}, claimant=claimant, context=context)
        if result.obsolete:
            ports.store.delete_keys(result.obsolete)
        outcome = {"outcome": "committed"}
        if result.epoch_items:
            outcome["epoch_costs"] = [item["cost"] for item in result.epoch_items]
        return outcome

    def _reject(self, event: Any, reason: str, claimant: str, context: Any = None) -> dict[str, Any]:
        """A malformed event: fail its run if it names a running one, touch nothing else."""
        run_id = event.get("run_id") if isinstance(event, dict) else None
        run = self.ports.table.get_run(run_id) if isinstance(run_id, str) and run_id else None
        if run is None or run["status"] != "running":
            return {"run_id": run_id, "outcome": "rejected", "reason": reason}
        return {"run_id": run_id, **control.fail_run(self.ports, run, reason, claimant=claimant, context=context)}

    def _still_next(self, run_id: str, step: int) -> bool:
        run = self.ports.table.get_run(run_id)
        return run is not None and run["status"] == "running" and run["committed_step"] == step - 1

    # ---- the step bodies -----------------------------------------------------------------------------------

    def _execute(self, position: Position, config: TrainingConfig, run: dict, context: Any) -> StepResult:
        if position.state == "finish":
            return self._finish(config, run)
        if config.granularity != "layer":
            return self._whole_epochs(position, config, run, context)
        if position.state == "start":
            return self._start(position, config, run)
        if position.state == "forward":
            return self._forward(position, config, run)
        return self._backward(position, config, run)

    def _start(self, position: Position, config: TrainingConfig, run: dict) -> StepResult:
        """Layer granularity: initialize the parameters (epoch 1) and mark the epoch's start."""
        result = StepResult(fields={"epoch_started_at": now()})
        if position.epoch == 1:
            params = network.init_params([run["features"], *config.neurons], config.init, config.seed)
            result.outputs[params_key(config, 0)] = params
        return result

    def _forward(self, position: Position, config: TrainingConfig, run: dict) -> StepResult:
        """Layer granularity: A_l, Z_l = g(W_l A_{l-1} + b_l); after the last layer, the epoch's cost."""
        epoch, layer = position.epoch, position.layer
        params = self._load(params_key(config, epoch - 1))
        A_prev = self._prepared(config, run).X if layer == 1 else self._load(activation_key(config, epoch, layer - 1))["A"]
        A, Z = network.layer_forward(A_prev, params[f"W{layer}"], params[f"b{layer}"], config.activations[layer - 1])
        outputs = {"A": A, "Z": Z}
        result = StepResult(outputs={activation_key(config, epoch, layer): outputs})
        if layer == config.layers:
            cost = finite_cost(network.compute_cost(A, self._prepared(config, run).Y, config.activations[-1]), epoch, config)
            outputs["cost"] = np.array(cost)
            result.fields["last_cost"] = cost
        return result

    def _backward(self, position: Position, config: TrainingConfig, run: dict) -> StepResult:
        """Layer granularity: dW_l, db_l and dA_{l-1}; at layer 1, the update and the epoch's results item."""
        epoch, layer, L = position.epoch, position.layer, config.layers
        params = self._load(params_key(config, epoch - 1))
        forward = self._load(activation_key(config, epoch, layer))
        if layer == L:
            dZ = network.output_delta(forward["A"], self._prepared(config, run).Y, config.activations[-1])
        else:
            dA = self._load(gradient_key(config, epoch, layer + 1))["dA_prev"]
            dZ = network.hidden_delta(dA, forward["Z"], config.activations[layer - 1])
        A_prev = self._prepared(config, run).X if layer == 1 else self._load(activation_key(config, epoch, layer - 1))["A"]
        dA_prev, dW, db = network.layer_backward(dZ, A_prev, params[f"W{layer}"])
        if layer > 1:
            return StepResult(outputs={gradient_key(config, epoch, layer): {"dA_prev": dA_prev, "dW": dW, "db": db}})
        grads = {"dW1": dW, "db1": db}
        for later in range(2, L + 1):
            gradients = self._load(gradient_key(config, epoch, later))
            grads[f"dW{later}"], grads[f"db{later}"] = gradients["dW"], gradients["db"]
        updated = finite_params(network.apply_update(params, grads, config.learning_rate), epoch)
        cost = float(self._load(activation_key(config, epoch, L))["cost"])
        scratch = [activation_key(config, epoch, l) for l in range(1, L + 1)] + [
            gradient_key(config, epoch, l) for l in range(2, L + 1)
        ]
        item = epoch_item(config, epoch, cost, updated, run.get("epoch_started_at") or now())
        return epochs_done(config, first_epoch=epoch, params=updated, items=[item], obsolete=scratch)

    def _whole_epochs(self, position: Position, config: TrainingConfig, run: dict, context: Any) -> StepResult:
        """Epoch and auto granularity: whole gradient-descent epochs, from the last committed parameters."""
        first = position.epoch
        prepared = self._prepared(config, run)
        if first == 1:
            params = network.init_params([run["features"], *config.neurons], config.init, config.seed)
        else:
            params = self._load(params_key(config, first - 1))
        deadline = time.monotonic() + remaining_seconds(context) - AUTO_SAFETY_SECONDS
        items, kept, slowest, epoch, units_per_item = [], {}, 0.0, first, 0
        while True:
            started_at, started = now(), time.monotonic()
            params, cost = network.gradient_descent_epoch(
                params, prepared.X, prepared.Y, list(config.activations), config.learning_rate
            )
            # the item holds lists or norms, not the arrays: memory stays flat however many epochs fit
            items.append(epoch_item(config, epoch, finite_cost(cost, epoch, config), finite_params(params, epoch), started_at))
            if is_checkpoint(config, epoch):  # kept whichever step reaches it: the item points at it
                kept[params_key(config, epoch)] = params
            slowest = max(slowest, time.monotonic() - started)
            units_per_item = units_per_item or item_write_units(items[0])
            if (
                epoch == config.epochs
                or config.granularity == "epoch"
                or len(items) == AUTO_MAX_EPOCHS_PER_STEP
                or time.monotonic() + 2 * slowest + commit_seconds(len(items) + 1, units_per_item) > deadline
            ):
                break
            epoch += 1
        result = epochs_done(config, first_epoch=first, params=params, items=items, obsolete=[])
        result.outputs |= kept
        result.checkpoints |= set(kept)
        return result

    def _finish(self, config: TrainingConfig, run: dict) -> StepResult:
        """Save the model, measure it, and end the run."""
        params = self._load(params_key(config, config.epochs))
        data = self._prepared(config, run).data
        activations = list(config.activations)
        key = model_key(run["run_id"])
        model = {**params, "activations": np.array(activations), "config": np.array(json.dumps(config.to_parameters()))}
        has_test = data.X_test is not None
        final = {
            "cost": run.get("last_cost"),
            "train_accuracy": network.accuracy(params, data.X, data.y, activations),
            "test_accuracy": network.accuracy(params, data.X_test, data.y_test, activations) if has_test else None,
            "epochs": config.epochs,
            "seconds": round(time.time() - run["created_epoch_seconds"], 3),
            "invocations": run.get("invocations", 0) + 1,
            "model_key": key,
        }
        result = StepResult(outputs={key: model}, final=final)
        result.checkpoints.add(key)
        return result

    # ---- inputs --------------------------------------------------------------------------------------------

    def _load(self, key: str) -> dict[str, np.ndarray]:
        return npz_to_arrays(self.ports.store.get_bytes(key), key=key)

    def _prepared(self, config: TrainingConfig, run: dict) -> PreparedData:
        """The run's training data, parsed once per warm container and ETag."""
        cache_key = (config.data, run["data_etag"])
        if cache_key not in self._data:
            raw = self.ports.store.get_bytes(config.data, etag=run["data_etag"], cache=False)
            try:
                data = load_training_data(raw, source=f"s3://{self.ports.store.bucket}/{config.data}")
                data.check_fits(config)
            except LnnInputError as error:
                raise RunFailure(str(error)) from error
            self._data.clear()  # one run's data at a time: a warm container serves one chain
            self._data[cache_key] = PreparedData(data, network.to_columns(data.X), network.targets(data.y, config.activations[-1], config.neurons[-1]))
        return self._data[cache_key]



# ---- events ----------------------------------------------------------------------------------------------


def make_event(run_id: str, config: TrainingConfig, position: Position) -> dict[str, Any]:
    """The trainer event for `position`: every field the seed's handler reads, and the step number."""
    return {
        "state": position.state,
        "run_id": run_id,
        "step": position.step,
        "epoch": position.epoch,
        "epochs": config.epochs,
        "layer": position.layer,
        "layers": config.layers,
        "neurons": layer_map(config.neurons),
        "activations": layer_map(config.activations),
        "learning_rate": config.learning_rate,
        "granularity": config.granularity,
    }


def parse_event(event: Any) -> StepEvent:
    """Check an event's shape and types; raise `LnnInputError` naming the first problem."""
    if not isinstance(event, dict):
        raise LnnInputError(f"the event must be a JSON object, not {type(event).__name__}")
    if "state" not in event:
        raise LnnInputError("the event lacks 'state'")
    if event["state"] not in STATES:
        raise LnnInputError(f"unknown state {shown(event['state'])}; expected one of {', '.join(STATES)}")
    for name, kind in (("run_id", str), ("step", int), ("epoch", int), ("epochs", int), ("layer", int), ("layers", int),
                       ("neurons", dict), ("activations", dict), ("learning_rate", (int, float)), ("granularity", str)):
        value = event.get(name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise LnnInputError(f"'{name}' must be of type {getattr(kind, '__name__', 'number')}; got {shown(value)}")
    if not (1 <= event["step"] and 1 <= event["epochs"] <= MAX_EPOCHS and 1 <= event["layers"] <= MAX_LAYERS):
        raise LnnInputError(f"'step', 'epochs' and 'layers' must be positive, with at most {MAX_EPOCHS} epochs and {MAX_LAYERS} layers")
    learning_rate = float(event["learning_rate"]) if abs(event["learning_rate"]) < 1e300 else math.inf  # huge ints overflow
    if not math.isfinite(learning_rate):
        raise LnnInputError(f"'learning_rate' must be a finite number; got {shown(event['learning_rate'])}")
    if not 1 <= event["epoch"] <= event["epochs"]:
        raise LnnInputError(f"epoch {event['epoch']} is out of range 1..{event['epochs']}")
    if not 0 <= event["layer"] <= event["layers"]:
        raise LnnInputError(f"layer {event['layer']} is out of range 0..{event['layers']}")
    layer_keys = [f"layer{i}" for i in range(1, event["layers"] + 1)]
    if sorted(event["neurons"]) != sorted(layer_keys) or sorted(event["activations"]) != sorted(layer_keys):
        raise LnnInputError(f"'neurons' and 'activations' must have the keys {', '.join(layer_keys)}")
    return StepEvent(
        run_id=event["run_id"],
        step=event["step"],
        position=Position(event["step"], event["state"], event["epoch"], event["layer"]),
        epochs=event["epochs"],
        layers=event["layers"],
        neurons=tuple(event["neurons"][k] for k in layer_keys),
        activations=tuple(event["activations"][k] for k in layer_keys),
        learning_rate=learning_rate,
        granularity=event["granularity"],
    )


def shown(value: Any, limit: int = 80) -> str:
    """A value for an error message, cut short: events can carry anything."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def schedule_mismatch(step_event: StepEvent, run: dict) -> str | None:
    """Why this event is not the run's next step, or None when it is."""
    expected = run.get("next_event") or {}
    received = event_fields(step_event)
    for name in ("step", "state", "epoch", "layer", "epochs", "layers", "neurons", "activations", "learning_rate", "granularity"):
        if received[name] != expected.get(name):
            return f"{name} is {shown(received[name])} but the run's next step has {shown(expected.get(name))}"
    return None


def event_fields(step_event: StepEvent) -> dict[str, Any]:
    """The fields of a validated event, in the form `make_event` writes them."""
    position = step_event.position
    return {
        "step": step_event.step,
        "state": position.state,
        "epoch": position.epoch,
        "layer": position.layer,
        "epochs": step_event.epochs,
        "layers": step_event.layers,
        "neurons": layer_map(step_event.neurons),
        "activations": layer_map(step_event.activations),
        "learning_rate": step_event.learning_rate,
        "granularity": step_event.granularity,
    }


# ---- storage layout --------------------------------------------------------------------------------------


def state_prefix(config: TrainingConfig) -> str:
    return config.data.rsplit("/", 1)[0] + "/state"


def params_key(config: TrainingConfig, epoch: int) -> str:
    """The parameters after `epoch` (0: the initial ones)."""
    return f"{state_prefix(config)}/params-e{epoch:07d}.npz"


def activation_key(config: TrainingConfig, epoch: int, layer: int) -> str:
    return f"{state_prefix(config)}/e{epoch:07d}/forward-l{layer:03d}.npz"


def gradient_key(config: TrainingConfig, epoch: int, layer: int) -> str:
    return f"{state_prefix(config)}/e{epoch:07d}/backward-l{layer:03d}.npz"


def model_key(run_id: str) -> str:
    return f"runs/{run_id}/model.npz"


def is_checkpoint(config: TrainingConfig, epoch: int) -> bool:
    return epoch == config.epochs or (epoch > 0 and epoch % CHECKPOINT_EVERY == 0)


# ---- results ---------------------------------------------------------------------------------------------


def epochs_done(config: TrainingConfig, *, first_epoch: int, params: dict, items: list, obsolete: list[str]) -> StepResult:
    """The shared tail of every step that completes epochs: parameters to S3, one results item per epoch."""
    last_epoch, last_cost = items[-1]["epoch"], items[-1]["cost"]
    key = params_key(config, last_epoch)
    result = StepResult(
        outputs={key: params},
        epoch_items=items,
        fields={"progress_epoch": last_epoch, "last_cost": last_cost},
        last_epoch_done=last_epoch,
        obsolete=obsolete,
    )
    if is_checkpoint(config, last_epoch):
        result.checkpoints.add(key)
    if not is_checkpoint(config, first_epoch - 1):
        result.obsolete.append(params_key(config, first_epoch - 1))
    return result


def epoch_item(config: TrainingConfig, epoch: int, cost: float, params: dict, started_at: str) -> dict[str, Any]:
    """The epoch's results item: its cost and its end-of-epoch weights (lists; or norms, and the key of the kept
    parameters at a checkpoint epoch). Its content depends on the epoch alone, never on the step that wrote it."""
    item = {"epoch": epoch, "cost": cost, "learning_rate": config.learning_rate, "started_at": started_at, "finished_at": now()}
    layers = range(1, config.layers + 1)
    if sum(array.size for array in params.values()) <= ITEM_WEIGHTS_LIMIT:
        item["weights"] = {f"layer{l}": params[f"W{l}"] for l in layers}
        item["bias"] = {f"layer{l}": params[f"b{l}"] for l in layers}
    else:
        item["weight_norms"] = {f"layer{l}": float(np.linalg.norm(params[f"W{l}"])) for l in layers}
        if is_checkpoint(config, epoch):
            item["checkpoint_key"] = params_key(config, epoch)
    return item


def commit_seconds(items: int, units_per_item: int) -> float:
    """Time to budget for writing `items` epoch items and the commit: a request per 25 items, and the write units
    one partition (all of a run's items share its key) accepts per second."""
    return math.ceil(items / 25) * BATCH_WRITE_SECONDS + items * units_per_item / PARTITION_WRITE_UNITS_PER_SECOND


def finite_cost(cost: float, epoch: int, config: TrainingConfig) -> float:
    if not np.isfinite(cost):
        raise RunFailure(f"the cost diverged at epoch {epoch} ({cost}); lower the learning rate ({config.learning_rate})")
    return float(cost)


def finite_params(params: dict[str, np.ndarray], epoch: int) -> dict[str, np.ndarray]:
    if not all(np.all(np.abs(array) < DIVERGED_MAGNITUDE) for array in params.values()):  # NaN fails too
        raise RunFailure(f"the weights diverged at epoch {epoch} (beyond {DIVERGED_MAGNITUDE:g} or NaN); lower the learning rate")
    return params


def remaining_seconds(context: Any) -> float:
    """Seconds left in this invocation (unbounded without a Lambda context, as in a direct call)."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return float("inf")
    return context.get_remaining_time_in_millis() / 1000
