"""The NumPy layer: pins shared with requirements.txt, its asset hash, pip errors, and one real build."""

import json
import os
import re
import socketserver
import subprocess
import threading
import time
from pathlib import Path

import pytest
from aws_cdk import App, DockerImage, Stack
from aws_cdk import aws_lambda as lambda_

from lnn_stack import numpy_layer
from lnn_stack.numpy_layer import LAYER_REQUIREMENTS, NumpyLayer, PipLayerBundling
from tests.infrastructure.conftest import PROJECT_DIR, SKIP_BUNDLING

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
WHEEL_MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}


def pins(requirements: list[str]) -> set[str]:
    """{"numpy==2.4.6", ...} with names normalized (PEP 503) and extras dropped."""
    result = set()
    for line in requirements:
        requirement = line.split("#")[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==")
            result.add(f"{re.sub(r'[-_.]+', '-', name.split('[')[0]).lower()}=={version}")
    return result


def test_layer_pins_equal_requirements_txt():
    """Local runs and Lambda must compute with the same NumPy (and log with the same Powertools)."""
    requirements_txt = (PROJECT_DIR / "requirements.txt").read_text().splitlines()
    assert pins(list(LAYER_REQUIREMENTS)) <= pins(requirements_txt)


def test_asset_hash_covers_requirements_platform_and_python_version(monkeypatch):
    stack = Stack(App(context=SKIP_BUNDLING), "Hashes")

    def s3_key(construct_id, runtime=lambda_.Runtime.PYTHON_3_14, architecture=lambda_.Architecture.ARM_64):
        layer = NumpyLayer(stack, construct_id, runtime=runtime, architecture=architecture).layer_version
        return stack.resolve(layer.node.default_child.content)["s3Key"]

    baseline = s3_key("Baseline")
    assert s3_key("Same") == baseline
    assert s3_key("X86", architecture=lambda_.Architecture.X86_64) != baseline
    assert s3_key("Py313", runtime=lambda_.Runtime.PYTHON_3_13) != baseline
    monkeypatch.setattr(numpy_layer, "LAYER_REQUIREMENTS", ("numpy==2.4.5", *LAYER_REQUIREMENTS[1:]))
    assert s3_key("OtherNumpy") != baseline


def test_a_pip_failure_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no network: fails fast, as an unreachable index would
    bundling = PipLayerBundling(
        requirements=("numpy==0.0.1",), platform="manylinux_2_28_aarch64", python_version="3.14"
    )
    with pytest.raises(RuntimeError) as caught:
        bundling.try_bundle(str(tmp_path / "out"), image=DockerImage.from_registry("unused"))
    message = str(caught.value)
    assert message.startswith(
        "Building the NumPy layer failed: pip could not get numpy==0.0.1 for Python 3.14 on manylinux_2_28_aarch64."
    )
    assert "Fix: check that this machine reaches PyPI" in message
    assert "LAYER_REQUIREMENTS in lnn_stack/numpy_layer.py" in message


class RecordingProxy(socketserver.ThreadingTCPServer):
    """An HTTP(S) proxy on the loopback that refuses everything and records that someone tried."""

    daemon_threads = True

    def __init__(self):
        self.attempts: list[bytes] = []
        super().__init__(("127.0.0.1", 0), self.Handler)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.server.attempts.append(self.request.recv(256))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def layer_directory(assembly_dir: Path, stack_name: str) -> tuple[dict, Path]:
    """The trainer's properties and the bundled directory of its layer, from the CLI's cloud assembly."""
    template = json.loads((assembly_dir / f"{stack_name}.template.json").read_text())
    resources = template["Resources"]
    (trainer,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == "lnn_core.handlers.train"
    ]
    (layer_key,) = {resources[layer["Ref"]]["Properties"]["Content"]["S3Key"] for layer in trainer["Layers"]}
    assets = json.loads((assembly_dir / f"{stack_name}.assets.json").read_text())["files"]
    (source,) = [
        a["source"]["path"]
        for a in assets.values()
        if any(d["objectKey"] == layer_key for d in a["destinations"].values())
    ]
    return trainer, assembly_dir / source


@pytest.mark.slow  # half a minute of cdk and pip; the fast tests above check the pins, the hash and pip's errors
@pytest.mark.layer_build
def test_cdk_synth_builds_the_layer_offline_for_the_functions_platform(tmp_path):
    # 1. With network allowed, fill the wheel cache (a quick no-op when it is already complete).
    PipLayerBundling(
        requirements=LAYER_REQUIREMENTS, platform=numpy_layer.PLATFORMS["arm64"], python_version="3.14"
    ).download()

    # 2. The real `cdk synth`, as `make synth` runs it, with every HTTP(S) request sent to a proxy that refuses
    #    and records: no notices, telemetry, version check or PyPI. A fresh HOME gives the CLI a cold cache.
    proxy = RecordingProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    home = tmp_path / "home"
    home.mkdir()
    offline = {name: proxy.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    environment = {key: value for key, value in os.environ.items() if key.lower() != "no_proxy"}
    environment.update(offline, HOME=str(home), XDG_CACHE_HOME=str(numpy_layer.cache_home()))
    assembly_dir = tmp_path / "cdk.out"
    started = time.monotonic()
    try:
        result = subprocess.run(
            [str(PROJECT_DIR / "node_modules" / ".bin" / "cdk"), "synth", "--quiet", "-o", str(assembly_dir)],
            cwd=PROJECT_DIR,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        proxy.shutdown()
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert proxy.attempts == []

    # 3. The layer the trainer uses holds NumPy for the trainer's architecture and Python, within Lambda's limit.
    trainer, layer = layer_directory(assembly_dir, "LnnStack")
    python_tag = "cp" + trainer["Runtime"].removeprefix("python").replace(".", "")
    (architecture,) = trainer["Architectures"]
    site_packages = layer / "python"
    (numpy_dist,) = site_packages.glob("numpy-*.dist-info")
    assert numpy_dist.name == f"numpy-{dict(r.split('==') for r in LAYER_REQUIREMENTS)['numpy']}.dist-info"
    tags = [
        line.split(": ", 1)[1] for line in (numpy_dist / "WHEEL").read_text().splitlines() if line.startswith("Tag: ")
    ]
    assert f"{python_tag}-{python_tag}-manylinux_2_28_{WHEEL_MACHINES[architecture]}" in tags
    assert (site_packages / "aws_lambda_powertools").is_dir()
    assert not [p for p in site_packages.rglob("*") if p.is_dir() and p.name in ("tests", "__pycache__")]
    size = sum(path.stat().st_size for path in layer.rglob("*") if path.is_file())
    assert size < LAMBDA_UNZIPPED_LIMIT
    print(
        f"\ncdk synth (offline, layer from the wheel cache): {seconds:.1f} s; "
        f"layer unzipped: {size / 1024 / 1024:.1f} MB; numpy tags: {', '.join(tags)}"
    )
