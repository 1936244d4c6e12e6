# Each target installs what it needs on a fresh Debian machine (as root), then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test unit system venv bench clean image

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
	$(PY) -m pip install --quiet -e 'node[test,bench,mcp]'
	touch $(PY)

venv: $(PY)

## bench: the benchmarks (latency, the fleet comparison, read-your-writes, how far one server
## and several go, what a runner loads, how fast it starts, what a job pays with the server
## down, where a GET's CPU goes, how long a GraphQL body takes to read, webhook deliveries);
## figures go to bench/results/
bench: $(PY)
	$(PY) -m pip install --quiet -e 'node[test,bench,mcp]'
	$(PY) bench/latency.py
	$(PY) bench/fleet.py
	$(PY) bench/client_floor.py
	$(PY) bench/consistency.py
	$(PY) bench/scale.py
	$(PY) bench/runner_deps.py
	$(PY) bench/runner_start.py
	$(PY) bench/server_down.py
	$(PY) bench/profile_get.py
	$(PY) bench/graphql_parse.py
	$(PY) bench/webhooks.py

## image: the container image, built with no index access (docs/docker.md)
image:
	bash docker/build-image.sh

clean:
	rm -rf $(VENV) .pytest_cache bench/results
