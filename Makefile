# The two entry points: `make run` (set up, then run the embedded default experiment) and `make test`.
# `make bench-smoke` runs every bench script's --smoke mode (CI runs it after `make test`).
PY ?= python3
VENV := .venv

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0   # the local CPU wheel; an unpinned torch pulls CUDA
	$(VENV)/bin/pip install -q -e ".[test]"
	touch $@

.PHONY: setup run test bench-smoke
setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/gradiend-flow run

test: setup
	$(VENV)/bin/python -m pytest

bench-smoke: setup
	$(VENV)/bin/python -m pytest -m bench tests/bench
