# The two commands a user needs: `make run` (see it work) and `make test` (prove it works).
# Everything is installed into the project folder: .venv (Python), .venv-sdk (official Kusto SDKs,
# test-only), node_modules (Azurite).

PYTHON ?= python3
VENV := .venv
SDK_VENV := .venv-sdk
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SDK_STAMP := $(SDK_VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: help setup run test lint format bench soak upload replay backfill status clean

help:
	@echo "make run     start Azurite, the Kusto emulator and the function app locally, with a demo"
	@echo "make test    lint and run every test (unit, integration, end-to-end)"
	@echo "make bench   measure throughput, cost per blob, latency and memory"
	@echo "make soak    10,000 blobs with faults and crashes; checks nothing is lost or duplicated"
	@echo "make upload FILE=path TO=db/table/   stage a file of your own while 'make run' is running"
	@echo "make replay WHAT=quarantine|poison|dead-letter [PREFIX=p] [DRY_RUN=1]   send what the running app set aside back"
	@echo "make backfill [PREFIX=db/table/] [SINCE=time] [UNTIL=time] [DRY_RUN=1]   record blobs already in staging"
	@echo "make status BLOB=db/table/file.csv   where one staged blob of the running app is"

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(SDK_STAMP): requirements-sdk.txt
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sdk.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || \
		(echo "Node.js 20 or newer is needed (found $$(node --version))"; exit 1)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(STAMP) $(SDK_STAMP) $(NODE_STAMP)

# mypy reads its files and settings from pyproject.toml ([tool.mypy]).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Ports: AZURITE_BLOB_PORT=10000 AZURITE_QUEUE_PORT=10001 AZURITE_TABLE_PORT=10002 EMULATOR_PORT=8082; DEMO=0 skips the demo.
run: $(STAMP) $(NODE_STAMP)
	$(PY) -m devhost.run

upload: $(STAMP)
	@test -n "$(FILE)" -a -n "$(TO)" || (echo "usage: make upload FILE=path TO=db/table/"; exit 2)
	$(PY) -m devhost.upload "$(FILE)" "$(TO)"

# The operator command (docs/operations.md) against the stack 'make run' started: that run keeps local.settings.json
# on its ports, as 'make upload' reads it. DRY_RUN=1 adds --dry-run.
OPS = $(PY) -m shared.ops --settings local.settings.json
DRY_RUN_FLAG = $(if $(filter-out 0,$(DRY_RUN)),--dry-run)

local.settings.json:
	@echo "no local.settings.json: start the local stack with 'make run' first (it writes the file)"; exit 2

replay: $(STAMP) local.settings.json
	@case "$(WHAT)" in quarantine|poison|dead-letter) ;; \
		*) echo "usage: make replay WHAT=quarantine|poison|dead-letter [PREFIX=p] [DRY_RUN=1]"; exit 2;; esac
	$(OPS) replay $(WHAT) --prefix "$(PREFIX)" $(DRY_RUN_FLAG)

backfill: $(STAMP) local.settings.json
	$(OPS) backfill --prefix "$(PREFIX)" $(if $(SINCE),--modified-since "$(SINCE)") $(if $(UNTIL),--modified-until "$(UNTIL)") $(DRY_RUN_FLAG)

status: $(STAMP) local.settings.json
	@test -n "$(BLOB)" || (echo "usage: make status BLOB=db/table/file.csv"; exit 2)
	$(OPS) status "$(BLOB)"

# Two workers: most tests wait on Azurite, the emulator or a timer, so two run side by side on two cores.
test: setup lint
	$(PY) -m pytest -n 2

# Measurements, not tests: prints a table (each figure beside its goal and baseline), writes .bench/.
# About 26 minutes on 2 cores (the throughput rounds drain 20,000 pending); one section: python -m bench --only <name>.
bench: setup
	$(PY) -m bench

soak: $(STAMP) $(NODE_STAMP)
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) $(SDK_VENV) node_modules .local .bench .pytest_cache .ruff_cache
