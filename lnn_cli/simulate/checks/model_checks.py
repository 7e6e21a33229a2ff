"""The model and reference invariants of the simulation's `Monitor` (see `invariants` for the table): a published
model is that of an ending that committed; at the end, the kept model, the committed costs and the final training
state equal the plain loop's (`train_reference_state`), bit for bit.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np

from lnn_cli.simulate.scenario import RUN_ID, reference


class ModelChecks:
    """A part of `Monitor`: it uses the monitor's `sim`, `world`, `_fail`, the `model_epochs` and `model_digest` it
    keeps, and the `committed_costs` its readers' check recorded."""

    def _check_model(self) -> None:
        """A published model is that of an ending that committed: its epoch is a `model_epoch` the record held
        (a later ending's replaces it just after that ending's commit)."""
        model = self.world.object(_model_key())
        if model is None or model == self.model_digest:
            return
        self.model_digest = model
        record = self.world.fields(RUN_ID, "status", "committed_step", "model_epoch") or {}
        if record.get("model_epoch") is not None:
            self.model_epochs.add(int(record["model_epoch"]))
        epoch = int(_npz(model)["epoch"])
        if epoch not in self.model_epochs:
            self._fail(
                "model",
                f"{_model_key()} of epoch {epoch} exists while no ending of that epoch committed (the "
                f"run is {record.get('status')} at committed_step {record.get('committed_step')}, "
                f"model_epoch {record.get('model_epoch')})",
            )

    def _check_kept_model(self, record: dict[str, Any]) -> None:
        """At the end, the published model is that of the record's `model_epoch`, the plain loop's after that
        epoch bit for bit; a run without one has none."""
        model = self.world.object(_model_key())
        epoch = record.get("model_epoch")
        if epoch is None:
            if model is not None:
                self._fail("model", f"{_model_key()} exists at the end of a {record['status']} run without model_epoch")
            return
        if model is None:
            self._fail("model", f"the run recorded model_epoch {epoch} and {_model_key()} is missing at the end")
            return
        arrays = _npz(model)
        if int(arrays["epoch"]) != epoch:
            self._fail("model", f"{_model_key()} is of epoch {int(arrays['epoch'])}, the record's model_epoch {epoch}")
        scenario = self.sim.scenario
        at_epoch = dataclasses.replace(scenario, parameters={**scenario.parameters, "epochs": int(epoch)})
        for name, value in reference(at_epoch, record["config"]["seed"])[0].items():
            if name not in arrays or arrays[name].tobytes() != np.asarray(value).tobytes():
                self._fail("reference", f"model.npz's {name} differs from the reference's after epoch {epoch}")

    def _check_reference(self, record: dict[str, Any]) -> None:
        from lnn_core.ml.config import TrainingConfig
        from lnn_core.protocol.layout import params_key

        seed = record["config"]["seed"]
        params, costs, opt_state = reference(self.sim.scenario, seed)
        got = self.committed_costs
        if record["status"] != "succeeded":
            if got != costs[: len(got)]:
                self._fail(
                    "reference",
                    f"the {record['status']} run's committed costs {got} are not a prefix of the reference's {costs}",
                )
            return
        if got != costs:
            self._fail("reference", f"committed costs {got} differ from the reference's {costs}")
        model = self.world.object(_model_key())
        if model is None:
            self._fail("model", "the run succeeded and runs/<id>/model.npz is missing at the end")
            return
        arrays = _npz(model)
        for name, value in params.items():
            if name not in arrays or arrays[name].tobytes() != np.asarray(value).tobytes():
                self._fail("reference", f"model.npz's {name} differs from the reference's")
        config = TrainingConfig.from_parameters(record["config"])
        state = self.world.object(params_key(config, record["progress_epoch"]))
        if state is None:
            self._fail(
                "reference", f"the final training state {params_key(config, record['progress_epoch'])} is missing"
            )
            return
        state = _npz(state)
        for name, value in {**params, **opt_state}.items():
            if name not in state or state[name].tobytes() != np.asarray(value).tobytes():
                self._fail("reference", f"the final training state's {name} differs from the reference's")


def _model_key() -> str:
    return f"runs/{RUN_ID}/model.npz"


def _npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
