# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on
# first use from nothing but Python 3.11, so a fresh clone works without manual steps.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-slow demo lint typecheck pytest bench clean reliability-long reliability-pessimistic test-clock

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# `make test` leaves out the tests marked `slow` (end-to-end runs of the daemon, the demo,
# the install journey, the simulated year: about half the time of the suite), so that it
# stays under ten minutes on 2 cores; `make test-slow` runs them, and CI runs both.
pytest: $(STAMP)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

# The tests that read the real clock (marked `wallclock`), under libfaketime at a morning
# and an evening instant, an hour's last minute, Europe's DST change and New Year's Eve,
# then the whole suite once at a summer midday (the net for an unmarked wall-clock test).
# The verdict must not change with the time of day (scripts/test-shifted-clock.sh).
test-clock: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/test-shifted-clock.sh -- $(PYTEST_ARGS)
	PYTHON=$(BIN)/python CLOCK_TESTS=tests bash scripts/test-shifted-clock.sh 2027-06-15T11:59:30Z -- $(PYTEST_ARGS)

# The reliability suite's long profile (tests/reliability; `make test` runs the short one).
reliability-long: $(STAMP)
	CVMKEEPER_RELIABILITY=long $(BIN)/pytest tests/reliability -p no:cacheprovider -rxX $(PYTEST_ARGS)

# The reliability suite's short profile with the emulator at its worst plausible behaviour
# (every open-point switch pessimistic; docs/emulator.md "Profiles"). CI runs it.
reliability-pessimistic: $(STAMP)
	CVMKEEPER_EMULATOR_PROFILE=pessimistic $(BIN)/pytest tests/reliability -p no:cacheprovider -rxX $(PYTEST_ARGS)

# The performance figures of docs/performance.md (several minutes).
bench: $(STAMP)
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/fleet.py --sizes 100,500,2000 --no-baseline
	$(BIN)/python bench/idle.py
	$(BIN)/python bench/planning.py
	$(BIN)/python bench/client_burst.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
