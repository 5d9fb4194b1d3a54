# The two entry points: `make run` (set up, then run the embedded default experiment) and `make test`.
PY ?= python3
VENV := .venv

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0   # the local CPU wheel; an unpinned torch pulls CUDA
	$(VENV)/bin/pip install -q -e ".[test]"
	touch $@

.PHONY: setup run test
setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/gradiend-flow run

test: setup
	$(VENV)/bin/python -m pytest
