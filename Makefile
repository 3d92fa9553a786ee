# Cordon — the two quick-start targets are `make demo` and `make test`.
# Both run `make setup` first, which installs whatever is missing (idempotent).

CARGO ?= cargo
# One build job at a time keeps a 2-core machine responsive; override with JOBS=N.
JOBS ?= 2
export CARGO_BUILD_JOBS = $(JOBS)

.PHONY: setup build demo demo-cluster demo-host test test-unit test-privileged lint fmt packages test-packages bench bench-ingest bench-cluster bench-cluster-detect clean

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release -p cordon-agent

## The reference threat-response scenario, narrated (root): a lab of network namespaces
## with a collector and two servers; a policy violation → Kafka and Splunk HEC → a Duo
## push (a local stand-in that approves) → isolation proven by a failing connection → a
## ServiceNow incident and e-mails → the release. See tests/src/bin/cordon-demo.rs.
demo: setup
	$(CARGO) build --release -p cordon-agent -p cordon-collector -p cordon-tests --bin cordon-agent --bin cordon-collector --bin cordon --bin cordon-demo
	CORDON_AGENT=$(CURDIR)/target/release/cordon-agent CORDON_COLLECTOR=$(CURDIR)/target/release/cordon-collector \
	  CORDON_CLI=$(CURDIR)/target/release/cordon CORDON_DEMO_KEEP=$(KEEP) $(CURDIR)/target/release/cordon-demo

## The reference scenario on a collector cluster: three nodes on PostgreSQL and Kafka;
## the node h2's agent is connected to is killed just before the attack (docs/cluster.md).
demo-cluster: setup
	$(CARGO) build --release -p cordon-agent -p cordon-collector -p cordon-tests --bin cordon-agent --bin cordon-collector --bin cordon --bin cordon-demo
	CORDON_AGENT=$(CURDIR)/target/release/cordon-agent CORDON_COLLECTOR=$(CURDIR)/target/release/cordon-collector \
	  CORDON_CLI=$(CURDIR)/target/release/cordon CORDON_DEMO_KEEP=$(KEEP) $(CURDIR)/target/release/cordon-demo --cluster

## The first demo: a collector and an enrolled agent on this host (no namespaces),
## streaming live flows with processes, shown through the `cordon` CLI until Ctrl-C.
demo-host: setup
	$(CARGO) build --release -p cordon-agent -p cordon-collector
	@bash scripts/demo.sh

## The whole suite: formatting, lints, unit tests, and the privileged end-to-end tests
## (root, real kernel).
test: setup
	@bash scripts/test.sh

test-unit:
	CORDON_SKIP_PRIVILEGED=1 $(CARGO) test --workspace --exclude cordon-agent-ebpf --exclude cordon-tests

test-privileged:
	$(CARGO) build -p cordon-agent -p cordon-collector -p cordon-enforcer
	$(CARGO) test -p cordon-tests -- --test-threads=2

## cordon-agent and cordon-collector as .deb and .rpm in target/packages/ (or
## $CARGO_TARGET_DIR/packages); see packaging/README.md.
packages: setup
	@bash scripts/packages.sh

## The packaging tests alone (root): builds the packages, inspects them, lints the debs,
## installs them in a Debian chroot and verifies the units. Also part of `make test`.
test-packages: setup
	@bash packaging/tests/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --exclude cordon-agent-ebpf --all-targets -- -D warnings
	cd agent-ebpf && $(CARGO) +nightly clippy -Z build-std=core --target bpfel-unknown-none --release -- -D warnings

fmt:
	$(CARGO) fmt --all

## Agent overhead benchmark (root): alternates runs with and without the agent.
## ROUNDS (default 3) and BENCH_SECONDS (default 5) set its length.
bench: setup
	$(CARGO) build --release -p cordon-agent -p cordon-tests --bin cordon-agent --bin cordon-bench
	bash tests/bench/agent-overhead.sh $(ROUNDS) $(BENCH_SECONDS)

## Collector ingest benchmark (no root): simulated agents over QUIC on loopback against a
## release collector it starts itself. INGEST_ARGS passes options to cordon-loadgen, e.g.
## INGEST_ARGS="--phase saturation --seconds 30".
bench-ingest: setup
	$(CARGO) build --release -p cordon-tests -p cordon-collector --bin cordon-loadgen --bin cordon-collector
	bash tests/bench/ingest.sh $(INGEST_ARGS)

## Collector cluster benchmarks (no root): the simulated agents of bench-ingest against one
## SQLite collector and clusters of 1, 2 and 3 nodes (PostgreSQL, tansu, release nodes on
## loopback), then failover under load. CLUSTER_BENCH picks one (throughput or failover),
## CLUSTER_ARGS passes options to cordon-cluster-bench, e.g. CLUSTER_ARGS="--seconds 30".
bench-cluster: setup
	$(CARGO) build --release -p cordon-tests -p cordon-collector --bin cordon-cluster-bench --bin cordon-collector
	bash tests/bench/cluster.sh $(or $(CLUSTER_BENCH),all) $(CLUSTER_ARGS)

## connect() → alert on Kafka (root): the single-collector fleet lab and the 3-node cluster
## lab with real agents, in one run. VIOLATIONS (default 100) per configuration.
bench-cluster-detect: setup
	$(CARGO) build --release -p cordon-agent -p cordon-collector -p cordon-tests --bin cordon-agent --bin cordon-collector --bin cordon --bin cordon-detect-bench --bin cordon-cluster-detect-bench
	bash tests/bench/cluster-detect.sh $(VIOLATIONS)

clean:
	$(CARGO) clean
