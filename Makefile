# Two commands on a fresh machine: `make demo` runs the loop, `make test` passes the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rrr-installed

.PHONY: install demo test bench soak api-fuzz stop lint clean

# torch first and pinned: pip then takes the local CPU wheel instead of several GB of CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m orchestration.demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	rm -f .coverage .coverage.*
	$(PY) -m pytest --cov --cov-report=
	$(PY) -m benchmarks.coverage_report

bench: $(STAMP)
	$(PY) -m benchmarks

# The engine, the model service and the replay exchange under scheduled faults: `make soak MINUTES=60`.
MINUTES ?= 10
soak: $(STAMP)
	$(PY) -m benchmarks.soak --minutes $(MINUTES)

# Schemathesis over every operation of the model service's OpenAPI (0 answers 5xx).
api-fuzz: $(STAMP)
	$(PY) -m benchmarks bench_api_fuzz

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

# Stops the model service and the embedded PostgreSQL and Redis servers under RRR_HOME (default ./.rrr).
stop:
	@if [ -x $(PY) ]; then $(PY) -m serving.launcher stop; $(PY) -m feature_store.services stop; \
	else echo "nothing to stop (no $(VENV))"; fi

clean: stop
	rm -rf .rrr
