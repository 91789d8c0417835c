# `make run` starts the service on embedded defaults; `make test` runs the suite; `make bench` measures it.
# `make test-unit` runs the fast tests alone (no Redis); `make mutants` mutation-tests the core logic with them.
# `make lint` runs ruff and mypy, as CI does before the suites.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

RECEIVER_BROKER_URL ?= redis://127.0.0.1:6379/0
export RECEIVER_BROKER_URL

# Defaults for `make run` only (the tests set their own); any variable already in the environment wins.
run: export RECEIVER_API_TOKEN ?= dev-api-token-change-me
run: export RECEIVER_SOURCES_FILE ?= sources.toml
# Text logs are easier to read in a terminal; services elsewhere default to JSON.
run: export RECEIVER_LOG_FORMAT ?= text
# Flower reads its basic auth from FLOWER_BASIC_AUTH itself (never on a command line, where ps shows it).
run: export FLOWER_BASIC_AUTH ?= admin:dev-flower-password-change-me
run: export PORT ?= 8000
run: export SANDBOX_PORT ?= 8079
run: export FLOWER_PORT ?= 5555

.PHONY: install run lint test test-unit mutants test-postgres bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

sources.toml:
	cp sources.example.toml sources.toml

# Every Procfile process, but the sandbox only when a source points at it (deploy/run-processes.sh):
# honcho stops everything when one process exits, as a sandbox with nothing to serve would.
run: install sources.toml
	@deploy/ensure-redis.sh "$$RECEIVER_BROKER_URL"
	$(BIN)/receiver migrate
	export PATH="$(CURDIR)/$(BIN):$$PATH"; processes=$$(deploy/run-processes.sh Procfile) && exec honcho start -f Procfile $$processes

# ruff (rules and line length in pyproject.toml), then mypy on receiver/ and workers/.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fast tests of the pure logic (marker `unit`): seconds, no Redis, no worker, no server.
test-unit: install
	$(BIN)/python -m pytest -m unit -q $(PYTEST_ARGS)

# Mutation testing with mutmut ([mutmut] in setup.cfg), driven by the fast tests; prints the score.
# Incremental: a second run only retests what changed. docs/testing.md has the last score.
mutants: install
	$(BIN)/mutmut run $(MUTMUT_ARGS); status=$$?; \
		$(BIN)/mutmut export-cicd-stats >/dev/null && $(BIN)/python tools/mutation_score.py mutants/mutmut-cicd-stats.json; \
		exit $$status

test-postgres: install
	RECEIVER_TEST_DATABASE_URL=$${RECEIVER_TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks, not tests: the receiver against a bare Flask app, a burst with the worker running, then
# pushes beside /metrics and /admin reads of an inbox of a million events, then each admin page over
# at least 500,000 events (docs/benchmarks.md).
# Needs wrk (installed here with apt-get when missing) and Redis; extra flags: BENCH_ARGS="--help".
bench: install
	@deploy/ensure-redis.sh "$$RECEIVER_BROKER_URL"
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var *.egg-info mutants
