"""Deploying to the emulator: what is left running when a step of it fails."""

import subprocess
import sys
from types import SimpleNamespace

import pytest

from lnn_cli.cloud import deploy


def test_a_failed_bootstrap_leaves_no_synth_running_past_the_lock_on_its_assembly(tmp_path, monkeypatch):
    """`cdk synth` runs beside `cdk bootstrap`; when the bootstrap fails, the synth must not keep writing cdk.out
    after `deploy_to_emulator` released the lock that keeps two deploys of one checkout apart."""
    synth = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(deploy, "_start_synth", lambda *args, **kwargs: synth)
    monkeypatch.setattr(deploy, "cdk_cli", lambda project_dir: tmp_path / "cdk")

    def failing_bootstrap(*args, **kwargs):
        raise deploy.DeployError("cdk bootstrap failed")

    monkeypatch.setattr(deploy, "_run_cdk", failing_bootstrap)
    try:
        with pytest.raises(deploy.DeployError, match="bootstrap failed"):
            deploy.deploy_to_emulator(
                SimpleNamespace(session=lambda: None), tmp_path / "deploy.log", stack_name="S", project_dir=tmp_path
            )
        assert synth.poll() is not None, "the synth still runs"
    finally:
        synth.kill()
        synth.wait()
