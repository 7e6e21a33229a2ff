"""`NumpyLayer`: a Lambda layer with NumPy and Powertools, built by CDK local bundling with pip (no Docker).

pip downloads the wheels for the function's platform, not the machine's: `--platform manylinux_2_28_<arch>`,
`--python-version` of the runtime, binary wheels only. NumPy 2.3 and newer ship only manylinux_2_28
wheels; with `manylinux2014` alone pip would silently fall back to NumPy 2.2.6.
The wheels are downloaded once into a user cache; later builds install from it without network.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

# The layer's packages: the one place their versions are pinned for Lambda. A test checks that they equal
# the pins in requirements.txt, so that local runs and Lambda compute with the same NumPy.
LAYER_REQUIREMENTS = ("numpy==2.4.6", "aws-lambda-powertools==3.37.0")

PLATFORMS = {"arm64": "manylinux_2_28_aarch64", "x86_64": "manylinux_2_28_x86_64"}


def python_version(runtime: lambda_.Runtime) -> str:
    """ "python3.14" -> "3.14"."""
    return runtime.name.removeprefix("python")


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


@jsii.implements(ILocalBundling)
class PipLayerBundling:
    """Installs the layer's wheels into <output>/python, the directory Lambda adds to sys.path."""

    def __init__(self, *, requirements: tuple[str, ...], platform: str, python_version: str) -> None:
        self.requirements = requirements
        self.platform = platform
        self.python_version = python_version

    @property
    def wheels(self) -> Path:
        """Where downloaded wheels are kept, so that later builds (e.g. after `rm -rf cdk.out`) need no network."""
        return cache_home() / "lnn" / "layer-wheels" / f"cp{self.python_version.replace('.', '')}-{self.platform}"

    def download(self) -> None:
        """Fill the wheel cache; without network access this succeeds only when the cache is already complete."""
        if self._pip("download", "--no-index", "--find-links", str(self.wheels), "--dest", str(self.wheels)).returncode:
            result = self._pip("download", "--dest", str(self.wheels))
            if result.returncode:
                raise RuntimeError(self._failure(result.stderr))

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options) -> bool:
        target = Path(output_dir) / "python"
        self.download()
        result = self._pip("install", "--no-index", "--find-links", str(self.wheels), "--target", str(target))
        if result.returncode:
            raise RuntimeError(self._failure(result.stderr))
        # Tests, bytecode and console scripts (their shebang names this machine's Python) only cost size.
        for unneeded in [*target.rglob("tests"), *target.rglob("__pycache__"), target / "bin"]:
            if unneeded.is_dir():
                shutil.rmtree(unneeded, ignore_errors=True)
        return True

    def _pip(self, command: str, *options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                command,
                "--quiet",
                "--disable-pip-version-check",
                *options,
                "--only-binary=:all:",
                "--implementation",
                "cp",
                "--python-version",
                self.python_version,
                "--platform",
                self.platform,
                *self.requirements,
            ],
            capture_output=True,
            text=True,
        )

    def _failure(self, pip_error: str) -> str:
        return (
            f"Building the NumPy layer failed: pip could not get {' '.join(self.requirements)} "
            f"for Python {self.python_version} on {self.platform}.\n{pip_error.strip()}\n"
            "Fix: check that this machine reaches PyPI (or the index set in pip.conf / PIP_INDEX_URL) and that "
            "each pinned version has a binary wheel for that Python and platform; the pins are LAYER_REQUIREMENTS "
            "in lnn_stack/numpy_layer.py. (Unit tests skip bundling with the context aws:cdk:bundling-stacks=[].)"
        )


class NumpyLayer(Construct):
    """A layer for one runtime and architecture; `layer_version` is what functions add to `layers`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, runtime: lambda_.Runtime, architecture: lambda_.Architecture
    ) -> None:
        super().__init__(scope, construct_id)
        platform = PLATFORMS[architecture.name]
        version = python_version(runtime)
        bundling = PipLayerBundling(requirements=LAYER_REQUIREMENTS, platform=platform, python_version=version)
        # The layer is a pure function of these: hash them, not the (unused) source directory.
        asset_hash = hashlib.sha256("|".join([*LAYER_REQUIREMENTS, platform, version]).encode()).hexdigest()
        self.layer_version = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(
                str(Path(__file__).parent),  # required by from_asset; local bundling does not read it
                asset_hash=asset_hash,
                asset_hash_type=AssetHashType.CUSTOM,
                bundling=BundlingOptions(image=DockerImage.from_registry("unused"), local=bundling),
            ),
            compatible_runtimes=[runtime],
            compatible_architectures=[architecture],
            description=f"{', '.join(LAYER_REQUIREMENTS)} for Python {version} on {platform}",
        )
