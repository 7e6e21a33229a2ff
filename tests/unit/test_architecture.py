"""The folders are the architecture (docs/architecture.md): no import circles, and each floor of lnn_core imports
only the floors below it; the math imports no AWS."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"lnn_core": ROOT / "lambda_src" / "lnn_core", "lnn_cli": ROOT / "lnn_cli", "lnn_stack": ROOT / "lnn_stack"}
# lnn_core's parts, each allowed to import only those listed (and errors.py, which every part may use)
LNN_CORE_FLOORS = {
    "ml": set(),
    "aws": {"ml"},
    "protocol": {"ml", "aws"},
    "launch": {"ml", "aws", "protocol"},
    "run_control": {"aws", "protocol"},
    "predictor": {"ml", "aws", "protocol"},
    "sweep": {"ml", "aws", "protocol", "launch", "run_control"},  # the sweep controller: it stops and launches runs
    "handlers": {"ml", "aws", "protocol", "launch", "run_control", "predictor", "sweep"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports when it runs (imports under `if TYPE_CHECKING:` never run)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {module for module in found if module in known and module != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, name, set(known)) for name, path in known.items()}


def test_no_module_imports_itself_through_others():
    edges, cycles = graph(), []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target) :] + [target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "lnn_core" and len(parts) > 1 and parts[1] != "errors" else None


@pytest.mark.parametrize("floor", sorted(LNN_CORE_FLOORS))
def test_each_part_of_lnn_core_imports_only_the_parts_below_it(floor):
    below = {
        module: sorted({part(target) for target in targets} - {None, floor} - LNN_CORE_FLOORS[floor])
        for module, targets in graph().items()
        if part(module) == floor
    }
    assert below and not any(below.values()), {module: wrong for module, wrong in below.items() if wrong}


def test_the_math_imports_no_aws_and_lnn_core_imports_no_client_code():
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        roots = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        roots |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        if name.startswith("lnn_core.ml"):
            assert not roots & {"boto3", "botocore", "aws_lambda_powertools"}, name
        if name.startswith("lnn_core"):
            assert not roots & {"lnn_cli", "lnn_stack"}, name


def test_the_lambda_entry_points_did_not_move():
    """The deployed functions name `lnn_core.handlers.<function>`: the template stays as it was."""
    handlers = ast.parse((PACKAGES["lnn_core"] / "handlers.py").read_text())
    defined = {node.name for node in handlers.body if isinstance(node, ast.FunctionDef)}
    assert {"launch", "train", "watchdog", "predict"} <= defined
