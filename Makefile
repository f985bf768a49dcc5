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
# Only the tests need these: headless Chromium renders the load report (tests/loadtests).
TEST_SYSTEM := chromium:chromium

COMPOSE_LAYERS ?=

.PHONY: compose-up compose-down test-containers up test check lint typecheck pytest system bench-bus bench-faultproxy bench-gateway bench-orders bench-replication bench-telemetry clean docs seed-data dashboards alerts kubernetes load load-ui capacity load-verify drills drills-controls

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(STAMP)

system:
	@scripts/require.sh $(SYSTEM)

# CHAOS=1: every hop through a named proxy of the fault proxy (`astra up --chaos`).
CHAOS ?=
up: $(STAMP) system
	$(BIN)/astra up $(if $(CHAOS),--chaos)

test: $(STAMP) system lint typecheck pytest

check: test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/astra dashboards generate --check
	$(BIN)/python -m stack.slo generate --check
	$(BIN)/python -m stack.chaos generate --check
	$(BIN)/python -m stack.kubernetes --check
	$(BIN)/astra docs --check

typecheck: $(STAMP)
	$(BIN)/mypy backbone contracts stack chaos gateway services bench loadtests drills

pytest: $(STAMP) system
	@scripts/require.sh $(TEST_SYSTEM)
	$(BIN)/pytest

dashboards: $(STAMP)
	$(BIN)/astra dashboards generate

alerts: $(STAMP)
	$(BIN)/python -m stack.slo generate

# deploy/kubernetes/base/monitoring/: PrometheusRules and Grafana dashboard ConfigMaps
# from alerts/ and dashboards/ (tests/kubernetes fails while they differ).
kubernetes: $(STAMP)
	$(BIN)/python -m stack.kubernetes

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

# What an order costs: raw SQL, the ledger in process, then the orders/s knee through
# the gateway (the capacity search, --mix orders). PG=<url> adds the PostgreSQL twin.
bench-orders: $(STAMP) system
	$(BIN)/python -m bench.orders $(if $(PG),--postgresql $(PG))

# CLUSTER=1: on a local six-node Redis Cluster instead of a primary and one replica.
bench-replication: $(STAMP) system
	$(BIN)/python -m bench.replication $(if $(CLUSTER),--cluster)

bench-telemetry: $(STAMP) system
	@scripts/require.sh wrk:wrk
	$(BIN)/python -m bench.telemetry

# Load: headless, about a minute, judged by alerts/slos.yaml (exit code = verdict; the
# report is var/load/<run-id>/report.html). Without HOST it starts a stack of its own with
# the rate limits raised for load; HOST=http://127.0.0.1:8000 drives a running `make up`.
SHAPE   ?= steady
USERS   ?= 10
RATE    ?= 20
DURATION ?= 60
WORKERS ?= 0
MIX     ?= default
LOAD_ARGS = --shape $(SHAPE) --mix $(MIX) --users $(USERS) --rate $(RATE) --seconds $(DURATION) --workers $(WORKERS)

load: $(STAMP) system
	$(BIN)/python -m loadtests run $(LOAD_ARGS) $(if $(HOST),--host $(HOST),--up)

# The knee: the highest rate (RATE, x2, ... up to MAX_RATE, then two bisections) whose
# run still meets every SLO, with CPU per process at each step; then Locust's own
# ceiling against nginx. MIX=traders for orders/s.
MAX_RATE ?= 320
capacity: $(STAMP) system
	@scripts/require.sh nginx:nginx
	$(BIN)/python -m loadtests capacity --up --mix $(MIX) --rate $(RATE) --max-rate $(MAX_RATE) \
	  --users $(USERS) --seconds $(or $(STEP_SECONDS),30) --workers $(WORKERS)

# Nominal load on the drill profile (`astra up --drill`) for 3 minutes (about 3 hours of
# compressed SLO time) at RATE=20 tasks/s, about a third of the measured knee: every SLO
# met and no alert fired.
load-verify: $(STAMP) system
	$(BIN)/python -m loadtests run --shape steady --users $(USERS) --rate $(RATE) \
	  --seconds $(or $(VERIFY_SECONDS),180) --workers $(WORKERS) --up --drill --quiet

# Chaos drills (chaos/drills/*.yaml), each on a stack of its own (`astra up --chaos
# --drill`): verdicts, reports and the alert fidelity table under var/drills/<run-id>/.
# DRILL=name for one; WITHOUT_DEFENCE=1 to show it fails with its defence off.
drills: $(STAMP) system
	$(BIN)/astra drill run $(or $(DRILL),--all) $(if $(WITHOUT_DEFENCE),--without-defence)

# The controls: every drill whose defence has an off switch, run with it off; each must
# end `failed` (exit 0 when all did). A drill that passes without its defence proves nothing.
drills-controls: $(STAMP) system
	$(BIN)/astra drill run --all --without-defence

# Locust's web UI on 127.0.0.1:8089 against a running `make up` (HOST to change it).
load-ui: $(STAMP)
	PYTHONPATH=. $(BIN)/locust -f loadtests/locustfile.py --web-host 127.0.0.1 \
	  --host $(or $(HOST),http://127.0.0.1:8000)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

# The stack in containers, for a machine with a normal Docker (README "Run it in
# containers"): builds the image, brings up the core and observability layers and
# waits until every container is healthy. COMPOSE_LAYERS="chaos load" adds layers.
compose-up:
	COMPOSE_LAYERS="$(COMPOSE_LAYERS)" scripts/compose.sh up

compose-down:
	COMPOSE_LAYERS="$(COMPOSE_LAYERS)" scripts/compose.sh down

# The container proof alone (tests/containers): a private dockerd, the image built on
# the official base or an offline Debian one, the compose stack up, used and broken.
test-containers: $(STAMP)
	$(BIN)/pytest -m containers tests/containers
