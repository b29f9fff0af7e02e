# pulsegate — the two commands that matter: `make run` and `make test`.
SWIFT ?= swift
PYTHON := .build/e2e-venv/bin/python
CONFIG ?=

# Three test processes. Swift Testing runs tests on the cooperative pool, one thread per core: on a
# 2-core machine the FIT corpus suite (seconds of synchronous decoding per file in a debug build) holds
# both threads, and every timing-sensitive test beside it (wake-ups, timeouts, simulated sensors in
# real time) waits for it. So the CPU-heavy suite, the sensor transports and everything else each run
# in a process of their own. The transport suites also run one test at a time: run side by side
# they disturb each other (a peer socket of one test closed under another, the BlueZ bus thread
# looked up by name among several), which is a test-isolation fault still to be fixed.
CPU_SUITES := PulseGateFITTests
TRANSPORT_SUITES := ANTBackendTests|ATTClientTests|HCIScanTests|HCIBackendTests|BlueZBackendTests

.PHONY: all deps build run test unit e2e bench soak format clean-var

all: build

deps:
	@scripts/deps.sh build

build: deps
	$(SWIFT) build

## Builds and starts the daemon on the embedded defaults (SQLite and an NDJSON file under ./var).
run: build
	@mkdir -p var
	@echo "pulsegate: listening on http://127.0.0.1:8080 (GET /healthz, /readyz, /metrics; POST /v1/samples)"
	@echo "pulsegate: store var/pulsegate.sqlite, samples appended to var/samples.ndjson, JSON logs on stderr"
	@echo "pulsegate: POST /v1/samples needs an API key: .build/debug/pulsegate apikey new --name me, then make run CONFIG=your.yaml"
	@echo "pulsegate: Ctrl-C stops it gracefully"
	$(SWIFT) run pulsegate serve $(if $(CONFIG),--config $(CONFIG),)

## Installs what is missing, builds, runs every test: Swift Testing suites, then the end-to-end suite
## against the built daemon.
test:
	@scripts/deps.sh test
	$(SWIFT) format lint --strict --recursive Sources vendors Tests Benchmarks Fuzz Package.swift
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --skip "$(TRANSPORT_SUITES)|$(CPU_SUITES)"
	$(SWIFT) test --skip-build --no-parallel --filter "$(TRANSPORT_SUITES)"
	$(SWIFT) test --skip-build --filter "$(CPU_SUITES)"
	PULSEGATE_BIN=$(CURDIR)/.build/debug/pulsegate $(PYTHON) -m pytest Tests/e2e -q

unit:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --skip "$(TRANSPORT_SUITES)|$(CPU_SUITES)"
	$(SWIFT) test --skip-build --no-parallel --filter "$(TRANSPORT_SUITES)"
	$(SWIFT) test --skip-build --filter "$(CPU_SUITES)"

e2e: build
	@scripts/deps.sh test
	PULSEGATE_BIN=$(CURDIR)/.build/debug/pulsegate $(PYTHON) -m pytest Tests/e2e -q

## Benchmarks (release build): durable enqueue, delivery, idle RSS. See Benchmarks/README.md.
bench:
	@scripts/deps.sh bench
	$(SWIFT) build -c release --product pulsegate
	$(SWIFT) build -c release --product pulsegate-bench
	.build/release/pulsegate-bench
	.build/release/pulsegate-bench sensors --sensors 100 --seconds 20
	$(PYTHON) scripts/bench_daemon.py --bin $(CURDIR)/.build/release/pulsegate
	$(PYTHON) scripts/bench_webhooks.py --bin $(CURDIR)/.build/release/pulsegate

## Long fault runs: the SIGKILL test with more rounds and samples.
soak: build
	@scripts/deps.sh test
	PULSEGATE_KILL_ROUNDS=50 PULSEGATE_KILL_SAMPLES=300000 PULSEGATE_BIN=$(CURDIR)/.build/debug/pulsegate \
		$(PYTHON) -m pytest Tests/e2e/test_kill9.py -q

## Rewrites the sources in the house style (.swift-format); `make test` checks it.
format:
	$(SWIFT) format --in-place --recursive Sources vendors Tests Benchmarks Fuzz Package.swift

clean-var:
	rm -rf var
