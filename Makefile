# The two entry points: `make run` (set up, then run the embedded default experiment) and `make test`.
# `make test-extended` runs the multi-minute tests (a suite on Dask and Ray) and `make bench-smoke` every bench
# script's --smoke mode; CI runs both after `make test`.
PY ?= python3
VENV := .venv

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0   # the local CPU wheel; an unpinned torch pulls CUDA
	$(VENV)/bin/pip install -q -e ".[test]"
	touch $@

.PHONY: setup run test test-extended bench-smoke
setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/gradiend-flow run

test: setup
	$(VENV)/bin/python -m pytest

test-extended: setup
	$(VENV)/bin/python -m pytest -m extended

bench-smoke: setup
	$(VENV)/bin/python -m pytest -m bench tests/bench
