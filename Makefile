# Each target installs what it needs on a fresh Debian machine (as root), then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test unit venv bench clean

$(PY): node/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e 'node[test]'
	touch $(PY)

venv: $(PY)

## test: every test (README's test command; .ci/run calls it)
test: $(PY)
	bash tests/setup.sh
	$(PY) -m pytest tests

## unit: only the fast pure tests
unit: $(PY)
	$(PY) -m pytest tests/unit

## bench: the benchmarks; figures go to bench/results/
bench: $(PY)
	$(PY) bench/latency.py

clean:
	rm -rf $(VENV) .pytest_cache bench/results
