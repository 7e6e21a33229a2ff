"""The LaunchLambda's logic: validate a run's parameters and data, create its record, send its first step.

Triggered by an upload of `runs/<name>/parameters.json` (through EventBridge; the run id is `<name>`) or by a
direct invoke `{"run_id": ..., "parameters": {...}}`. Nothing is created until everything is valid, and a
repeated launch of the same run (EventBridge delivers at least once) starts nothing new.
"""

import dataclasses
import json
import secrets
import time
import uuid
from typing import Any

from . import control
from .config import TrainingConfig, check_run_id
from .dataset import load_training_data
from .engine import make_event, model_key
from .errors import LnnInputError, RunFailure
from .ports import Ports, RunExists, now
from .schedule import first_position, step_bound


class Launcher:
    def __init__(self, ports: Ports, *, defaults: dict[str, Any], logger):
        self.ports, self.defaults, self.log = ports, defaults, logger

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        uploaded = isinstance(event, dict) and event.get("source") == "aws.s3"
        run_id = None
        try:
            run_id, parameters = self._parameters_from_upload(event) if uploaded else self._parameters_from_invoke(event)
            return self.launch(run_id, parameters)
        except LnnInputError as error:
            self.log.error("launch rejected", extra={"run_id": run_id, "reason": str(error)})
            if uploaded:  # nobody waits for an upload's answer: tell the operators
                self.ports.notifier.publish(
                    subject=f"LNN run {run_id} rejected",
                    body={"run_id": run_id, "status": "rejected", "reason": str(error)},
                    status="rejected",
                )
            return {"run_id": run_id, "status": "rejected", "reason": str(error)}

    def launch(self, run_id: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """Validate, create the run record, and send step 1."""
        check_run_id(run_id)
        if not isinstance(parameters, dict):
            raise LnnInputError("parameters must be a JSON object in the LNN parameters.json format")
        config = TrainingConfig.from_parameters({"data": f"runs/{run_id}/data.npz", **parameters}, defaults=self.defaults)
        if not config.data.startswith(f"runs/{run_id}/"):
            raise LnnInputError(f"data must be under runs/{run_id}/ (the run's own prefix); got {config.data}")
        if config.data == model_key(run_id) or config.data.startswith(f"runs/{run_id}/state/"):
            raise LnnInputError(f"data may not be {config.data}: LNN writes there; use runs/{run_id}/data.npz")
        store = self.ports.store
        etag = store.head_etag(config.data)
        if etag is None:
            raise LnnInputError(f"training data s3://{store.bucket}/{config.data} does not exist; upload it first")
        try:
            data = load_training_data(store.get_bytes(config.data, etag=etag, cache=False), source=f"s3://{store.bucket}/{config.data}")
        except RunFailure as error:  # the object changed between HEAD and GET
            raise LnnInputError(str(error)) from error
        data.check_fits(config)
        seed_drawn = config.seed is None
        if seed_drawn:  # drawn once, here: every output of the run is then a pure function of its record
            config = dataclasses.replace(config, seed=secrets.randbelow(2**32))
        first_event = make_event(run_id, config, first_position())
        record = {
            "status": "running",
            "config": config.to_parameters(),
            "seed_drawn": seed_drawn,
            "data_etag": etag,
            "features": data.features,
            "examples": int(data.X.shape[0]),
            "committed_step": 0,
            "invoked_step": 0,
            "step_bound": step_bound(config),
            "next_event": first_event,
            "progress_epoch": 0,
            "invocations": 0,
            "resumes": 0,
            "stop_requested": False,
            "notified": False,
            "created_at": now(),
            "created_epoch_seconds": time.time(),
            "updated_at": now(),
        }
        try:
            self.ports.table.create_run(run_id, record)
        except RunExists:
            return self._relaunch(run_id, config, seed_drawn=seed_drawn)
        control.send(self.ports, run_id, first_event)
        self.log.info("launched", extra={"run_id": run_id, "epochs": config.epochs, "granularity": config.granularity})
        return {"run_id": run_id, "status": "running"}

    def _relaunch(self, run_id: str, config: TrainingConfig, *, seed_drawn: bool) -> dict[str, Any]:
        """A second launch of an existing run: the same request is a duplicate delivery, a different one a name clash."""
        existing = self.ports.table.get_run(run_id)
        requested = config.to_parameters()
        if seed_drawn and existing.get("seed_drawn"):  # both asked for no seed: each drew its own
            requested["seed"] = existing["config"]["seed"]
        if existing["config"] != requested:
            raise LnnInputError(f"a run named {run_id} already exists with other parameters; choose another name")
        control.ensure_next_sent(self.ports, existing)
        return {"run_id": run_id, "status": existing["status"], "duplicate": True}

    def _parameters_from_upload(self, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        detail = event.get("detail") or {}
        key = (detail.get("object") or {}).get("key", "")
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != "runs" or parts[2] != "parameters.json":
            raise LnnInputError(f"uploaded key {key!r} is not runs/<name>/parameters.json")
        run_id = parts[1]
        try:
            parameters = json.loads(self.ports.store.get_bytes(key, cache=False))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise LnnInputError(f"{key} is not valid JSON ({error})") from error
        except RunFailure as error:
            raise LnnInputError(str(error)) from error
        return run_id, parameters

    @staticmethod
    def _parameters_from_invoke(event: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(event, dict) or "parameters" not in event:
            raise LnnInputError('a direct launch needs {"parameters": {...}} and optionally "run_id"')
        return event.get("run_id") or f"run-{uuid.uuid4().hex[:12]}", event["parameters"]
