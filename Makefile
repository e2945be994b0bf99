# agency-crm developer commands. `make install` once, then `make lint test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_CONSTRAINT_FILE := constraints.txt
PYTEST_ARGS ?=
BENCH_LIFECYCLE_ARGS ?=
BENCH_ANALYTICS_ARGS ?=
BENCH_ANALYTICS_ROLES_ARGS ?=
BENCH_QUEUE_ARGS ?=
BENCH_PUSH_ARGS ?=
BENCH_BACKFILL_ARGS ?=
BENCH_DRAINERS_ARGS ?=
DEMO_ARGS ?=
# The slow tiers, each marked with why (pyproject.toml): make test-fast leaves them out.
SLOW_MARKERS := not crash and not property and not packaging and not stress and not demo

.PHONY: help install test test-fast lint fmt db-upgrade db-status schema-dump schema-check docs docs-check bench demo clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

$(BIN)/agency-crm: pyproject.toml $(PIP_CONSTRAINT_FILE)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(PIP_CONSTRAINT_FILE) -e '.[dev,oracle,bench,demo]'
	@touch $@

install: $(BIN)/agency-crm ## Create .venv and install agency-crm (editable) with the dev, test-oracle, benchmark and demo tools

test: install ## Run the whole test suite (starts a throwaway PostgreSQL unless TEST_DATABASE_URL is set)
	$(BIN)/pytest $(PYTEST_ARGS)

# Bytecode is written even where PYTHONDONTWRITEBYTECODE is set: the five processes (and the
# next run) then share compiled modules and pytest's rewritten tests instead of each
# compiling them again.
test-fast: install ## The inner loop: all but the crash, property (Hypothesis), packaging, stress and demo tests, 4 workers
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -m "$(SLOW_MARKERS)" -n 4 --dist worksteal $(PYTEST_ARGS)

lint: install ## ruff, ruff format --check, mypy, sqlfluff (plpgsql_check runs in the suite)
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	$(BIN)/mypy
	$(BIN)/sqlfluff lint sql --processes 1

fmt: install ## Format Python (ruff) and SQL (sqlfluff fix)
	$(BIN)/ruff check --fix python tests bench
	$(BIN)/ruff format python tests bench
	$(BIN)/sqlfluff fix sql --processes 1

db-upgrade: install ## Upgrade the database named by DATABASE_URL
	$(BIN)/agency-crm db upgrade

db-status: install ## Show migrations applied to the database named by DATABASE_URL
	$(BIN)/agency-crm db status

schema-dump: install ## Regenerate sql/schema.dump.sql from a fresh install
	$(BIN)/python -m agency_crm.dev schema-dump sql/schema.dump.sql

schema-check: install ## Fail when sql/schema.dump.sql is stale
	$(BIN)/python -m agency_crm.dev schema-dump --check sql/schema.dump.sql

docs: install ## Regenerate docs/sql-api.md, docs/openapi.json and the worked examples of docs/analytics.md and docs/api.md
	$(BIN)/python -m agency_crm.dev sql-api docs/sql-api.md
	$(BIN)/python -m agency_crm.dev analytics-examples docs/analytics.md
	$(BIN)/python -m agency_crm.dev openapi docs/openapi.json
	$(BIN)/python -m agency_crm.dev api-examples docs/api.md
	$(BIN)/python -m agency_crm.dev readme-examples README.md

docs-check: install ## Fail when docs/sql-api.md, docs/openapi.json or the examples of docs/analytics.md or docs/api.md are stale
	$(BIN)/python -m agency_crm.dev sql-api --check docs/sql-api.md
	$(BIN)/python -m agency_crm.dev analytics-examples --check docs/analytics.md
	$(BIN)/python -m agency_crm.dev openapi --check docs/openapi.json
	$(BIN)/python -m agency_crm.dev api-examples --check docs/api.md
	$(BIN)/python -m agency_crm.dev readme-examples --check README.md

bench: install ## Benchmarks: lifecycle triggers, analytics at scale and under row-level security, the push queue, end-to-end push, a HubSpot backfill, several drainers; results in docs/benchmarks.md
	@# Every benchmark runs; the target fails at the end if one missed its target.
	@status=0; \
	$(BIN)/python bench/bench_lifecycle.py $(BENCH_LIFECYCLE_ARGS) || status=1; \
	$(BIN)/python bench/bench_analytics.py $(BENCH_ANALYTICS_ARGS) || status=1; \
	$(BIN)/python bench/bench_analytics_roles.py $(BENCH_ANALYTICS_ROLES_ARGS) || status=1; \
	$(BIN)/python bench/bench_queue.py $(BENCH_QUEUE_ARGS) || status=1; \
	$(BIN)/python bench/bench_push.py $(BENCH_PUSH_ARGS) || status=1; \
	$(BIN)/python bench/bench_backfill.py $(BENCH_BACKFILL_ARGS) || status=1; \
	$(BIN)/python bench/bench_drainers.py $(BENCH_DRAINERS_ARGS) || status=1; \
	exit $$status

demo: install ## Run agency-crm end to end: a private PostgreSQL, fake CRMs, demo data, analytics, HTML report
	$(BIN)/agency-crm demo $(DEMO_ARGS)

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist .agency-crm
