"""The page's charting library is npm's uplot, copied unchanged into the package (lnn_cli/web/static/vendor/)."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "lnn_cli" / "web" / "static" / "vendor"
INSTALLED = ROOT / "node_modules" / "uplot"
COPIES = {
    "uPlot.iife.min.js": "dist/uPlot.iife.min.js",
    "uPlot.min.css": "dist/uPlot.min.css",
    "uPlot.LICENSE": "LICENSE",
}


@pytest.mark.parametrize("copy, original", COPIES.items())
def test_the_copy_is_npms_file(copy, original):
    assert (INSTALLED / original).is_file(), "node_modules has no uplot: run `npm ci` (make setup does)"
    assert (VENDOR / copy).read_bytes() == (INSTALLED / original).read_bytes(), (
        f"{copy} differs from node_modules/uplot/{original}: copy it again after changing uplot's version"
    )


def test_the_pinned_version_is_the_one_copied():
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["uplot"]
    assert json.loads((INSTALLED / "package.json").read_text())["version"] == pinned
    assert (
        (VENDOR / "uPlot.iife.min.js").read_text().startswith(f"/*! https://github.com/leeoniya/uPlot (v{pinned}) */")
    )
