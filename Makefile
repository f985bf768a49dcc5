# The few verbs a newcomer needs. `make up` runs the stack, `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYSTEM := redis-server:redis-server redis-benchmark:redis-tools \
          prometheus:prometheus promtool:prometheus \
          prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager \
          prometheus-redis-exporter:prometheus-redis-exporter \
          prometheus-blackbox-exporter:prometheus-blackbox-exporter

.PHONY: up test check lint typecheck pytest system bench-bus bench-faultproxy bench-gateway bench-telemetry clean docs seed-data dashboards

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(STAMP)

system:
	@scripts/require.sh $(SYSTEM)

up: $(STAMP) system
	$(BIN)/astra up

test: $(STAMP) system lint typecheck pytest

check: test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/astra dashboards generate --check
	$(BIN)/astra docs --check

typecheck: $(STAMP)
	$(BIN)/mypy backbone contracts stack chaos gateway services bench

pytest: $(STAMP) system
	$(BIN)/pytest

dashboards: $(STAMP)
	$(BIN)/astra dashboards generate

seed-data: $(STAMP)
	$(BIN)/python -m stack.seed

docs: $(STAMP)
	$(BIN)/astra docs

bench-bus: $(STAMP) system
	$(BIN)/python -m bench.bus

bench-faultproxy: $(STAMP) system
	$(BIN)/python -m bench.faultproxy

bench-gateway: $(STAMP) system
	@scripts/require.sh wrk:wrk nginx:nginx
	$(BIN)/python -m bench.gateway

bench-telemetry: $(STAMP) system
	@scripts/require.sh wrk:wrk
	$(BIN)/python -m bench.telemetry

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
