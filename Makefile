# The two commands a new user needs: `make run` and `make test`.
# Everything they need is installed here, idempotently: a second run only
# reinstalls Python packages when pyproject.toml, setup.py or the C module changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test check lint typecheck test-py test-js system bench bench-peers clean

run: $(VENV)/.stamp-run
	$(BIN)/promptcast serve --host $(HOST) --port $(PORT)

test: $(VENV)/.stamp-dev system lint typecheck test-js test-py

check: lint typecheck

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests bench

typecheck: $(VENV)/.stamp-dev
	$(BIN)/mypy

test-js: system
	node --test tests/js/

test-py: $(VENV)/.stamp-dev system
	$(BIN)/pytest

# Debian packages the tests use (chromium, redis-server, nginx, node): installed
# only when missing.
system:
	@scripts/setup-system.sh

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# llama-cpp-python has no Linux wheel: the first install compiles llama.cpp
# (several minutes) for any AVX2 machine and keeps the wheel, so later installs
# take seconds (scripts/install-llama.sh says why not pip's own build).
$(VENV)/.stamp-run: pyproject.toml setup.py src/promptcast/wire/_scan.c scripts/install-llama.sh | $(VENV)/bin/python
	@PYTHON=$(BIN)/python scripts/setup-system.sh build
	@scripts/install-llama.sh $(BIN)
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml setup.py src/promptcast/wire/_scan.c scripts/install-llama.sh | $(VENV)/bin/python
	@PYTHON=$(BIN)/python scripts/setup-system.sh build
	@scripts/install-llama.sh $(BIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.stamp-run

bench: $(VENV)/.stamp-dev system
	$(BIN)/python -m bench.run

bench-peers: $(VENV)/.stamp-dev system
	$(BIN)/python -m bench.run --peers

clean:
	rm -rf $(VENV) build src/*.egg-info src/promptcast/wire/*.so
