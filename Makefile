# Two commands from a fresh clone: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stratus-installed
AZURITE_VERSION := 3.37.0
AZURITE := .tools/node_modules/.bin/azurite-blob

.PHONY: run test test-quick venv lint format clean bench chromium services

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	@# the distribution was called `stratus` before (PyPI's stratus is another project)
	-@$(BIN)/python -m pip uninstall --quiet --yes stratus 2>/dev/null
	$(BIN)/python -m pip install --quiet -e '.[test,sample-data]'
	@touch $@

venv: $(STAMP)

$(AZURITE):
	npm install --silent --no-fund --no-audit --prefix .tools azurite@$(AZURITE_VERSION)

## Debian's Chromium for the Explorer's browser tests (Playwright drives it; idempotent)
chromium:
	@command -v chromium >/dev/null || ( \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium)

## Debian's PostgreSQL and redis-server for the metastore and multi-instance tests (the fixtures
## start their own servers on free ports, as a non-root user when run as root; idempotent)
services:
	@{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
	  && command -v redis-server >/dev/null || ( \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends postgresql redis-server)

## make run: install, load the sample data if the lakehouse is empty, serve on http://127.0.0.1:8080
run: $(STAMP)
	$(BIN)/stratus admin bootstrap
	$(BIN)/stratus sample-data --load --if-empty
	$(BIN)/stratus serve

## make test: install with test extras and the Azurite emulator, lint (ruff, with its bandit
## "S" rules), audit the installed dependencies against PyPI's advisories, run the whole suite: the
## quick tests, the Spark Connect engine tests (marker `spark`: a local Spark Connect server from
## pyspark, Java 17) and the podman image build/run test (marker `container`: installs podman and
## mmdebstrap with apt as root, builds the base image and a wheelhouse). The pytest fixtures start
## Azurite, PostgreSQL, redis-server, Spark Connect and the container, and stop them at the end.
test: $(STAMP) $(AZURITE) chromium services
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/python scripts/audit_dependencies.py
	STRATUS_AZURITE_BIN=$(abspath $(AZURITE)) $(BIN)/pytest

## make test-quick: the same without the slow `spark` and `container` markers (a few minutes)
test-quick: $(STAMP) $(AZURITE) chromium services
	STRATUS_AZURITE_BIN=$(abspath $(AZURITE)) $(BIN)/pytest -m "not container and not spark"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks scripts
	$(BIN)/ruff check --fix src tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/query.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache
