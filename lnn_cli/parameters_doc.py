"""docs/parameters.md, generated from the table of training parameters (lambda_src/lnn_core/ml/parameters.py).

python -m lnn_cli.parameters_doc          # rewrite docs/parameters.md
python -m lnn_cli.parameters_doc --check  # exit 1 when the committed file differs from the table
"""

import argparse
import sys
from pathlib import Path

from lnn_core.ml.parameters import TABLE, TrainingParameter

DOC = Path(__file__).resolve().parents[1] / "docs" / "parameters.md"
HEADER = """# Training parameters

<!-- Generated from lambda_src/lnn_core/ml/parameters.py by `python -m lnn_cli.parameters_doc`; do not edit. -->

A run's parameters come, last wins, from the stack's training defaults, a `parameters.json` (`--config FILE`, or
the one uploaded to `runs/<id>/parameters.json`), and the flags of `lnn local` and `lnn start`. The defaults below
are those of a stack deployed with an empty context; `cdk deploy -c KEY=VALUE` (or `lnn local -c`, `lnn up -c`)
changes a stack's default for every flag's key. `lnn local` and `lnn start` print the configuration they send,
after the defaults, with the seed the launcher drew. `make demo` trains with `lnn_cli/data/demo-parameters.json`.

The original LNN's `parameters.json` (0.0 to 1.0) is read verbatim: its spelling is in the last column. In a
`parameters.json`, `neurons` and `activations` are lists (layer 1 first) or the original's `{"layer1": ...}` maps.

| parameter | flag | accepts | default | what it does | original LNN |
|---|---|---|---|---|---|
"""


def row(parameter: TrainingParameter) -> str:
    flag = f"`{parameter.flag_name}`" if parameter.flag else "(parameters.json only)"
    accepts = parameter.accepts + (f" ({parameter.optimizer} only)" if parameter.optimizer else "")
    if parameter.default is None and parameter.unset:
        default = parameter.unset
    else:
        default = f"`{parameter.default_text}`"
    lnn = f"`{parameter.lnn[0]}` (LNN {parameter.lnn[1]})" if parameter.lnn else ""
    cells = [f"`{parameter.name}`", flag, accepts, default, parameter.help, lnn]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def markdown() -> str:
    return HEADER + "\n".join(row(parameter) for parameter in TABLE) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnn_cli.parameters_doc", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare docs/parameters.md with the table")
    args = parser.parse_args(argv)
    if args.check:
        if not DOC.exists() or DOC.read_text() != markdown():
            print(f"{DOC} differs from the table; run: python -m lnn_cli.parameters_doc", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(markdown())
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
