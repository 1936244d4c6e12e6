# Each target installs what it needs on a fresh Debian machine (as root), then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test unit system venv bench clean

## test: every test (README's test command; .ci/run calls it)
test: system $(PY)
	$(PY) -m pytest tests

## unit: only the fast pure tests
unit: $(PY)
	$(PY) -m pytest tests/unit

## system: the system packages and services the tests need
system:
	bash tests/setup.sh

$(PY): node/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e 'node[test]'
	touch $(PY)

venv: $(PY)

## bench: the benchmarks; figures go to bench/results/
bench: $(PY)
	$(PY) bench/latency.py

clean:
	rm -rf $(VENV) .pytest_cache bench/results
