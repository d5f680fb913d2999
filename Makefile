# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run restart test lint typecheck pytest durations bench bench-start bench-smoke bench-memory bench-density lock clean fuzz durability soak

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	# The demo's two models trained and saved once (regserve.registry.demo.prepare), kept in
	# ~/.cache/regserve: `regserve up --demo` then registers them without training.
	$(BIN)/python -m regserve.registry.demo --prepare > /dev/null
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/regserve up --demo

# Restart `make run`'s regserve in place (SIGHUP): no request dropped, workers adopted.
restart: $(STAMP)
	$(BIN)/regserve restart

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

# Two processes by default: most of a test's time is waiting for servers and workers.
# PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
# Lines of regserve run in the pytest processes and the Python processes they start (coverage's
# subprocess patch: `regserve up`, workers in .venv's interpreter; not workers in environments
# of their own): a full run reached 93.0% (docs/architecture.md#tests). Raise it; never lower it.
COVERAGE_FLOOR := 92
# tests/registry first, in a process of its own: MLflow's server and registry tables read
# their configuration when first imported, and other in-process tests import them too.
# The other tests: whole files to two workers, the costliest first (tests/durations.json, from
# the last full run: `make durations`), tests/ui as one unit (tests/support/scheduling.py).
pytest: $(STAMP)
	$(BIN)/pytest tests/registry --cov=regserve --cov-report=
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --ignore=tests/registry \
		--cov=regserve --cov-append --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR) \
		$(PYTEST_ARGS)

# Re-measure what each test file costs (a full run), for the workers' order of files.
durations: $(STAMP)
	$(MAKE) pytest PYTEST_ARGS=--junitxml=.pytest-junit.xml
	$(BIN)/python -m tests.support.scheduling .pytest-junit.xml

# regserve vs `mlflow models serve` vs a bare ASGI app (needs wrk: apt-get install -y wrk).
bench: $(STAMP)
	$(BIN)/python -m bench.run

# Start-up paths (fresh demo, restart, new version, killed replica) against `mlflow models serve`
# of the same registered model, in one run (docs/performance.md#start-up). BENCH_START_ARGS=...
bench-start: $(STAMP)
	$(BIN)/python -m bench.start_vs_mlflow $(BENCH_START_ARGS)

bench-smoke: $(STAMP)
	$(BIN)/python -m bench.run --smoke

# RSS with 1, 5 and 20 versions served, worker sharing off and on (REGSERVE_SHARE_WORKERS).
bench-memory: $(STAMP)
	$(BIN)/python -m bench.memory

# Issue 20: 50 models x 20 versions on one regserve with a 3 GiB memory budget (bench/density.py).
bench-density: $(STAMP)
	$(BIN)/python -m bench.density $(DENSITY_ARGS)

# Longer, freshly random fuzzing than CI's fixed run (tests/worker, tests/e2e/test_fuzz_gateway.py).
# Schemathesis: 200 examples per operation and mode instead of CI's 15.
fuzz: $(STAMP)
	REGSERVE_FUZZ_EXAMPLES=3000 REGSERVE_SCHEMATHESIS_EXAMPLES=200 REGSERVE_FUZZ_RANDOM=1 \
		$(BIN)/pytest -q tests/worker/test_fuzz_protocol.py tests/e2e/test_fuzz_gateway.py \
		tests/e2e/test_schemathesis.py

# kill -9 of regserve during writes, 20 times (CI does 5).
durability: $(STAMP)
	REGSERVE_TEST_KILL_RESTARTS=20 $(BIN)/pytest -q -s --durations=1 --timeout=1800 \
		tests/e2e/test_faults.py -k kill

# Load on two versions while workers are killed, the stage moves, the cluster is reconfigured
# and regserve restarts (docs/reliability.md); about 4 minutes. SOAK_ARGS="--duration 600 --json".
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Re-resolve the pinned dependency set (needs the package index).
lock:
	test -x $(BIN)/uv || ($(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet uv)
	$(BIN)/uv pip compile --quiet --python-version 3.11 --extra dev --extra ray --extra postgres pyproject.toml -o requirements.lock

clean:
	rm -rf $(VENV) .regserve .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.*
