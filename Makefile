# Two commands matter: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

CITUS_DIR ?= ../shared/citus

.PHONY: install run test test-citus bench-citus lint format openapi bench soak fuzz docker token sweep rotate-kek clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# fhir-kit-client for the compatibility tests (tests/compat); without npm they skip.
compat/js/node_modules/.installed: compat/js/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix compat/js --no-audit --no-fund && touch $@; \
	else echo "npm not found: the fhir-kit-client compatibility test will be skipped"; fi

run: install ## migrate and serve on http://127.0.0.1:8000 (embedded Postgres without DATABASE_URL)
	$(BIN)/espace-api serve --host $(HOST) --port $(PORT)

test: install lint compat/js/node_modules/.installed ## full suite against a real Postgres (DATABASE_URL or embedded)
	$(BIN)/pytest

test-citus: install ## the whole suite on a throw-away Citus cluster (coordinator + 2 workers; docs/citus.md)
	CITUS_DIR=$(CITUS_DIR) tests/citus/cluster.sh sh -c \
		'DATABASE_URL=$$CITUS_DATABASE_URL TEST_EXISTING_DATABASE=1 $(BIN)/pytest $(PYTEST_ARGS)'

bench-citus: install ## core + deposit on one plain instance, then on a 3-node Citus cluster (same settings)
	CITUS_PLAIN=1 tests/citus/cluster.sh sh -c 'DATABASE_URL=$$CITUS_DATABASE_URL \
		BENCH_EXISTING_DATABASE=1 $(BIN)/python -m bench.run --scenarios core,deposit $(BENCH_ARGS)'
	CITUS_DIR=$(CITUS_DIR) tests/citus/cluster.sh sh -c 'DATABASE_URL=$$CITUS_DATABASE_URL \
		BENCH_EXISTING_DATABASE=1 $(BIN)/python -m bench.citus --scenarios core,deposit $(BENCH_ARGS)'

fuzz: install ## hostile-query property suite (5,000 examples; make test runs 120) + schemathesis on every operation
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/test_no_query_widens_access.py tests/openapi/test_fuzz.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

openapi: install ## regenerate the committed OpenAPI spec
	$(BIN)/espace-api openapi --output openapi/openapi.json

bench: install ## load benchmark: req/s and p50/p95/p99 (wrk from Debian when missing)
	@command -v wrk >/dev/null || { echo "installing wrk (Debian package)"; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y wrk >/dev/null || \
		echo "wrk could not be installed: the wrk scenarios will stop"; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# SOAK_SCENARIOS=faults runs only the fault proofs (bench/faults.py; FAULT_ARGS="--scenarios kill").
SOAK_SCENARIOS ?= mixed,faults
soak: install ## mixed workload for 5 minutes (wrk, 50 connections), then Postgres restart and kill -9 during deposits
ifneq (,$(findstring mixed,$(SOAK_SCENARIOS)))
	@command -v wrk >/dev/null || $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y wrk >/dev/null
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
endif
ifneq (,$(findstring faults,$(SOAK_SCENARIOS)))
	$(BIN)/python -m bench.faults $(FAULT_ARGS)
endif

sweep: install ## delete document content no committed metadata references (after the grace period)
	$(BIN)/espace-api sweep-blobs

rotate-kek: install ## re-wrap the patients' data keys under the current KEK (idempotent, resumable)
	$(BIN)/espace-api rotate-kek

docker:
	docker build -t espace-api .

token: install ## dev token from the built-in issuer, e.g. make token KIND=patient PATIENT=<id>
	$(BIN)/espace-api token --kind $(KIND) $(if $(PATIENT),--patient $(PATIENT)) $(if $(CLIENT),--client-id $(CLIENT)) $(if $(SCOPES),--scopes "$(SCOPES)")

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
