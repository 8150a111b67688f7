# Two entry points: `make quickstart` (the whole workflow on synthetic data, on this CPU) and `make test` (CI).
# `make test-fast` skips the integration tests (training, conversion, export, subprocesses) for the edit-run loop.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test test-fast test-slow lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/bpnet quickstart -r results/quickstart

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15 -m "not slow and not integration"

lint: $(STAMP)
	$(BIN)/ruff check bpnet tests bench
	$(BIN)/ruff format --check bpnet tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q tests/test_import_graph.py

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) .pytest_cache
