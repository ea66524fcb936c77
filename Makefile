# The two commands of the README: `make up` and `make test`. Both install into .venv first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
# pip warns about every package for this machine's unused local index folders; hide just that.
QUIET_PIP := { grep -v '^WARNING: Location' || true; }
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up test test-pg15 lint format dbt-docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | $(QUIET_PIP)
	touch $(STAMP)

up: install
	$(BIN)/numbase up

test: install
	$(BIN)/pytest -q

# The migration and data-layer tests against another server (CI: PostgreSQL 15 on :5432).
test-pg15: install
	NUMBASE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
		$(BIN)/pytest -q -m "not slow" tests/integration/test_migrations.py tests/integration/test_schema.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache
