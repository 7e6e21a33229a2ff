"""`pip install -e .` prints no warning of the project's own making, and the package carries its data files."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "lnn_cli", "lnn_stack", "lambda_src/lnn_core")


def test_the_build_warns_about_nothing_and_packages_the_data(tmp_path):
    project = tmp_path / "project"
    for source in SOURCES:  # a copy: the build writes build/ and *.egg-info next to the sources
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, project / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (project / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, project / source)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "-v",
            str(project),
            "-w",
            str(tmp_path / "wheel"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    output = built.stdout + built.stderr
    assert "Warning" not in output and "would be ignored" not in output, output  # setuptools' own warnings
    (wheel,) = (tmp_path / "wheel").glob("lnn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "lnn_cli/data/breast_cancer.npz",
        "lnn_cli/web/templates/index.html",
        "lnn_cli/web/static/lnn.js",
        "lnn_core/ml/network.py",
        "lnn_stack/__init__.py",
        "lnn_cli/cloud/runtime/__init__.py",
    } <= names
    shipped = [
        path.relative_to(ROOT).as_posix()
        for folder in ("lnn_cli/web/static", "lnn_cli/web/templates", "lnn_cli/data")
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert "lnn_cli/web/static/vendor/uPlot.iife.min.js" in shipped
    assert sorted(set(shipped) - names) == []  # every file of the page and the data is in the wheel
