# Every target installs what it needs first, so each works on a fresh machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
SOURCES := flruntime components schemas tests bench job_templates

.PHONY: install test lint typecheck bench

install:
	$(PIP) install --quiet --disable-pip-version-check -e '.[dev,pt,tracking]'

lint: install
	$(PYTHON) -m ruff check $(SOURCES)
	$(PYTHON) -m ruff format --check $(SOURCES)

typecheck: install
	$(PYTHON) -m mypy

# The test command the README gives and CI runs: lint, types, then the whole suite (slow tests included).
test: lint typecheck
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) bench/validate.py
