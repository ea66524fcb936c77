# The two commands of the README: `make up` and `make test`. Both install into .venv first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
# pip warns about every package for this machine's unused local index folders; hide just that.
QUIET_PIP := { grep -v '^WARNING: Location' || true; }
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The dbt manifest Dagster's code location loads: prepared here, once per change of the dbt
# project, never on every load of the code location.
DBT_MANIFEST := dbt_project/target/manifest.json
DBT_FILES := dbt_project/dbt_project.yml dbt_project/profiles.yml \
	$(shell find dbt_project/models dbt_project/macros dbt_project/tests -type f 2>/dev/null)

.PHONY: install up test test-pg15 lint format dbt-manifest dbt-docs clean

install: $(STAMP) $(DBT_MANIFEST)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | $(QUIET_PIP)
	touch $(STAMP)

$(DBT_MANIFEST): $(STAMP) $(DBT_FILES)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dagster-dbt project prepare-and-package \
		--file orchestration/assets/dbt.py
	touch $(DBT_MANIFEST)

# The dbt manifest Dagster's code location loads (see DBT_MANIFEST above).
dbt-manifest: $(DBT_MANIFEST)

# dbt's docs site for the configured database: build it, then serve it on 127.0.0.1:8080
# (or open dbt_project/target/static_index.html, a single self-contained file).
dbt-docs: install
	$(BIN)/python -m orchestration.dbt_env docs generate --static
	$(BIN)/python -m orchestration.dbt_env docs serve --host 127.0.0.1 --port 8080 --no-browser

up: install
	$(BIN)/numbase up

test: install
	$(BIN)/pytest -q

# The migration and data-layer tests against another server (CI: PostgreSQL 15 on :5432).
test-pg15: install
	NUMBASE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
		$(BIN)/pytest -q -m "not slow" tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache
