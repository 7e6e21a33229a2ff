# The two README commands: `make demo` and `make test`. Each does all the set-up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup lint demo test slow synth bench bench-reads mutants simulate clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: setup
	cdk synth --quiet

demo: setup
	lnn local --config lnn_cli/data/demo-parameters.json --out out/demo

# The linters first (pyproject.toml [tool.ruff]; vulture: dead code in the product, framework callbacks allowed in
# tests/vulture_allowlist.py, the tests read so that what only tests call counts as used), then the tests.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@! $(VENV)/bin/vulture lambda_src lnn_cli lnn_stack app.py tests --min-confidence 60 | grep -v '^tests/'

# --dist worksteal: a worker that runs out of tests takes half of the other's queue (with the default `load`, one
# worker's last chunk ran on alone for a minute while the other sat idle).
test: lint
	$(PY) -m pytest -n 2 --dist worksteal -m "not slow"

slow: setup
	$(PY) -m pytest -n 2 -m slow

# `make bench JOB=workers ARGS="--workers-neurons 1024,512,10 --workers-memory 3584"`: one job, with its options.
bench: setup
	$(PY) -m lnn_cli.bench $(if $(JOB),--job $(JOB)) $(ARGS)

# Reads of a 1,000-epoch run (lnn_cli/bench/reads.py), on the stack the environment points at: `lnn up` first.
bench-reads: setup
	$(PY) -m lnn_cli.bench.reads

mutants: setup
	$(PY) -m tests.mutants

# The deterministic simulator (docs/simulation.md): `make simulate SEEDS=N [FIRST=n]` runs seeds n..n+N-1 and prints
# the throughput and the faults by kind; `make simulate SEED=n` replays one with its trace, SHRINK=1 shrinks it;
# `make simulate EXHAUSTIVE=1 [MAX=n]` explores the small cases to the end (or n states each).
simulate: setup
	$(PY) -m lnn_cli.simulate $(if $(EXHAUSTIVE),--exhaustive $(if $(MAX),--max-states $(MAX)),$(if $(SEED),--seed $(SEED) $(if $(SHRINK),--shrink,--trace) $(if $(DISABLE),--disable $(DISABLE)),--seeds $(or $(SEEDS),1000) --first $(or $(FIRST),0) --keep-going))

clean:
	rm -rf $(VENV) node_modules cdk.out out
