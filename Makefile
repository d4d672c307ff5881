# The two commands: `make demo` and `make test`. Everything else supports them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)

.PHONY: setup demo test lint format kafka chaos clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || test -x $(UV) || python3 -m pip install --quiet --user uv
	$(UV) sync --frozen --extra dev --quiet
	touch $@

demo: setup
	$(PY) -m connector.kafka.broker fetch
	$(PY) -m connector.demo

test: setup lint helm-check
	$(PY) -m connector.kafka.broker fetch
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check connector chaos tests
	$(VENV)/bin/ruff format --check connector chaos tests
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format connector chaos tests
	$(VENV)/bin/ruff check --fix connector chaos tests

# The failure scenarios at full size: a table, then
# `chaos: scenarios=<n> lost=<n> duplicates=<n> leaked_secrets=<n>`.
# One scenario, smaller: .venv/bin/python -m chaos --scale 0.2 --only credential-fault
chaos: setup
	$(PY) -m connector.kafka.broker fetch
	$(PY) -m chaos

# Fetch the Kafka jars into the cache outside the clone (done by demo and test too).
kafka: setup
	$(PY) -m connector.kafka.broker fetch

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The Helm chart: lint --strict, render with the default and ci/ values, validate every
# manifest offline against the Kubernetes schemas, and check that bad values are refused.
# The first run builds the pinned helm into the cache outside the clone.
.PHONY: helm-check
helm-check: setup
	PYTHON=$(PY) bash helm/check.sh

# The JSON Schemas in schemas/, generated from the event types in connector/events.py;
# tests/test_schemas.py fails while the committed files differ from the types.
.PHONY: schemas
schemas: setup
	$(PY) -m connector schemas --write schemas

# The benchmark (bench/README.md): the connector against aioapns and h2load, all sending
# to one nginx stand-in; nginx and h2load come from Debian's packages the first time.
# `make bench N=20000` for a shorter run; the record goes to bench/results/latest.json.
.PHONY: bench
N ?= 100000
bench: setup
	@bash bench/install.sh
	@$(PY) -m connector.kafka.broker fetch >/dev/null
	$(PY) -m bench --n $(N)
