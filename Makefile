# Two commands do everything: `make demo` and `make test`. Both build the venv and check the
# system binaries first. The harness finds initdb/pg_ctl under /usr/lib/postgresql/*/bin too.
SHELL := /bin/bash
# First interpreter that actually runs and is >= 3.11 (pyenv shims exist for versions that don't).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

AEDES := tests/brokers/aedes
AEDES_STAMP := $(AEDES)/node_modules/.installed

.PHONY: test lint typecheck pytest rules static demo bench bench-quick demo-sysdeps sysdeps \
	bench-sysdeps brokers venv clean

venv: $(STAMP)

# Two distributions: fleet-telemetry (fleetd, fleetctl: what production installs) and
# simulator/ (fleet-sim, the test harness, the benchmark, paho-mqtt).
$(STAMP): pyproject.toml simulator/pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.11 is required: sudo apt-get install -y python3 python3-venv"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e ./simulator
	@touch $(STAMP)

# System packages, each as PACKAGE:COMMAND (the command proves the package is there; found on
# PATH, in /usr/sbin, /sbin or /usr/lib/postgresql/*/bin). Missing ones are installed when root,
# else the exact apt-get command is printed. `make demo` needs only the first list: PostgreSQL,
# Mosquitto and Node.js + npm (the dashboard's assets). `make test` adds mosquitto_sub, openssl
# (TLS tests), promtool (Debian's prometheus, the alert rules), Chromium (the dashboard's test),
# wrk (the bench's HTTP stage), ip + iptables (links cut inside network namespaces) and
# nats-server (a three-node MQTT cluster for the failover test); `make bench` adds RabbitMQ.
DEMO_SYSDEPS := postgresql:initdb mosquitto:mosquitto nodejs:node npm:npm
TEST_SYSDEPS := mosquitto-clients:mosquitto_sub openssl:openssl prometheus:promtool \
	chromium:chromium wrk:wrk iproute2:ip iptables:iptables nats-server:nats-server
BENCH_SYSDEPS := rabbitmq-server:rabbitmq-server

define install_missing
	@missing=""; \
	 for dep in $(1); do \
	   pkg=$${dep%%:*}; cmd=$${dep#*:}; \
	   command -v $$cmd >/dev/null || test -x /usr/sbin/$$cmd || test -x /sbin/$$cmd \
	     || ls /usr/lib/postgresql/*/bin/$$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	 done; \
	 if [ -n "$$missing" ]; then \
	   if [ "$$(id -u)" = 0 ]; then \
	     echo "installing:$$missing"; \
	     DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	   else \
	     echo "missing system packages:$$missing"; \
	     echo "run: sudo apt-get install -y$$missing"; exit 1; \
	   fi; \
	 fi
endef

demo-sysdeps:
	$(call install_missing,$(DEMO_SYSDEPS))

sysdeps: demo-sysdeps
	$(call install_missing,$(TEST_SYSDEPS))

# The dashboard's charting library and the API docs page's Swagger UI, from npm
# (web/package-lock.json) into the package: vendored at build time, never fetched from a CDN at
# run time, never committed. web/assets.py does it (npm ci, copy); the wheel's build hook
# (hatch_build.py) runs the same step when the files are missing, so `pip install .` from a
# clean clone ships them too.
VENDOR := daemon/fleetctl/api/static/vendor
static: $(VENDOR)/uPlot.iife.min.js $(VENDOR)/swagger-ui-bundle.js

$(VENDOR)/uPlot.iife.min.js $(VENDOR)/swagger-ui-bundle.js &: web/package.json web/package-lock.json web/assets.py | demo-sysdeps
	$(PYTHON) web/assets.py

# aedes from npm: the second MQTT broker implementation the ingest tests run against.
brokers: $(AEDES_STAMP)

$(AEDES_STAMP): $(AEDES)/package.json $(AEDES)/package-lock.json | demo-sysdeps
	npm ci --no-audit --no-fund --loglevel=error --prefix $(AEDES)
	@touch $@

lint: venv
	$(BIN)/ruff check daemon simulator tests
	$(BIN)/ruff format --check daemon simulator tests

typecheck: venv
	$(BIN)/mypy

pytest: venv sysdeps brokers static
	$(BIN)/pytest -q

test: lint typecheck rules pytest bench-quick

# The Prometheus alert rules: syntax, and their unit tests (promtool from Debian's prometheus).
rules: sysdeps
	promtool check rules config/prometheus/fleet-rules.yml
	cd config/prometheus && promtool test rules fleet-rules.test.yml

demo: venv demo-sysdeps static
	$(BIN)/python -m fleetsim.demo

# The bench's small-window stage runs a private RabbitMQ (its MQTT plugin ships with it).
bench-sysdeps: sysdeps
	$(call install_missing,$(BENCH_SYSDEPS))

bench: venv bench-sysdeps
	$(BIN)/python -m fleetsim.bench --json bench-results.json

bench-quick: venv sysdeps
	$(BIN)/python -m fleetsim.bench --quick --json bench-quick.json

clean:
	rm -rf $(VENV) $(AEDES)/node_modules web/node_modules $(VENDOR) .test-artifacts .mypy_cache .ruff_cache .pytest_cache bench-*.json
