# resilient-etl: the two quickstart commands are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/airflow-3.3.2-py3.11.txt
STAMP := $(VENV)/.installed

.PHONY: install demo test lint test-unit sandbox standalone cluster cluster-down drills config-check bench clean

$(STAMP): requirements.txt pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -c $(CONSTRAINTS)
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install Airflow, the providers and this package

demo: install  ## run company_enrichment end to end on SQLite against the sandbox APIs
	$(BIN)/resilient-etl-dev demo

test: install lint  ## lint, layers, types, then the whole suite (needs PostgreSQL and Redis; .ci/run starts them)
	$(BIN)/pytest -p no:cacheprovider --durations=20

lint: install  ## ruff (lint + format), the import-linter layer contracts, mypy on the typed layers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test-unit: install  ## unit tests only: no network, no services
	$(BIN)/pytest -p no:cacheprovider tests/unit

sandbox: install  ## serve both sandbox APIs on 127.0.0.1:8701 / :8702 until Ctrl-C
	$(BIN)/resilient-etl-dev sandbox

standalone: install  ## Airflow UI on :8080 over this project's DAGs (see README)
	bash scripts/standalone.sh

cluster: install  ## CeleryExecutor deployment on loopback: PostgreSQL metadata DB, Redis broker, two workers (docs/deployment.md)
	$(BIN)/resilient-etl cluster up
	$(BIN)/resilient-etl cluster status

cluster-down: install  ## stop exactly what `make cluster` started
	$(BIN)/resilient-etl cluster down

drills: install  ## every failure drill (~10 min), recorded, then docs/drills.md, recovery.md and disaster-recovery.md
	$(BIN)/resilient-etl drill run --all --record docs/drill-results.json
	$(BIN)/resilient-etl drill report

config-check: install
	$(BIN)/resilient-etl config check

bench: install  ## every benchmark, one after another (under 20 min; needs PostgreSQL and Redis); writes bench/results.md
	cd bench && ../$(BIN)/python results.py

clean:
	rm -rf data .airflow
