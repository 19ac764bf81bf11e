# The two commands of the README's quickstart, and the checks CI runs.
#   make demo   install into .venv, then run the offline demo of the SDK flow
#   make test   install into .venv, then run the whole test suite

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := sdk8,postgres,mysql,cli,encryption,test

.PHONY: demo test lint install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m zoho_token_store.demo

test: $(VENV)/.installed
	$(PY) -m pytest -n 2

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/mypy
