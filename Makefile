# Every target installs what it needs first, so each works on a fresh machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
SOURCES := flruntime components schemas tests bench job_templates

MAIN_JOB ?= /tmp/flruntime/jobs/fedavg_pt
MAIN_WS ?= /tmp/flruntime/fedavg_pt

.PHONY: install test lint typecheck bench main-job

# Debian's chromium (tests/test_dashboard.py drives the dashboard in it), installed once, as root (CI) or with sudo.
CHROMIUM := /usr/bin/chromium

install:
	@test -x $(CHROMIUM) || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(PIP) install --quiet --disable-pip-version-check -e '.[dev,pt,tracking,monai,he,dashboard,tf]'

lint: install
	$(PYTHON) -m ruff check $(SOURCES)
	$(PYTHON) -m ruff format --check $(SOURCES)

typecheck: install
	$(PYTHON) -m mypy

# The test command the README gives and CI runs: lint, types, then the whole suite (slow tests included).
test: lint typecheck
	$(PYTHON) -m pytest -q

# The README's main job: FedAvg of a small CNN on scikit-learn's digits, 4 sites, in the simulator, with every
# site's metrics in an embedded MLflow store (sqlite) in the server's workspace.
main-job: install
	$(PYTHON) -m flruntime job create -t fedavg_pt -w $(MAIN_JOB) --force
	$(PYTHON) -m flruntime simulate $(MAIN_JOB) -n 4 -w $(MAIN_WS)
	@echo "MLflow UI: mlflow ui --backend-store-uri sqlite:///$(MAIN_WS)/server/mlflow.db"

bench: install
	$(PYTHON) bench/validate.py
