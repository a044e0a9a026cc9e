# The two commands a new user needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: run test lint format fresh-check clean bench-import bench-matcher eval-matcher bench-bots bench-gateway

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Concierge needs Python 3.11 or newer: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)

# One stamp per install flavour, redone whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	# The CPU build of PyTorch first: unpinned, pip would pick a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/concierge db upgrade
	$(BIN)/concierge demo load
	$(BIN)/concierge serve

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# What a new user does: clone, `make test`, then `make run` until the service answers.
fresh-check:
	.ci/fresh-clone-check

clean:
	rm -rf $(VENV) var *.egg-info .pytest_cache .mypy_cache .ruff_cache

bench-import: $(VENV)/.installed-test
	$(BIN)/python -m bench.import_bench

eval-matcher: $(VENV)/.installed-test
	$(BIN)/python -m bench.matcher_eval

bench-matcher: $(VENV)/.installed-test
	$(BIN)/python -m bench.matcher_bench

bench-bots: $(VENV)/.installed-test
	$(BIN)/python -m bench.bots_bench

bench-gateway: $(VENV)/.installed-test
	$(BIN)/python -m bench.gateway_bench
