#!/usr/bin/env bash
# `make observe`: Jaeger (traces: OTLP on 127.0.0.1:4317, where `make run` exports, the UI on
# localhost:16686) and Prometheus with the SLO rules (localhost:9090), watching `make run`'s
# edge. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${JAEGER_BIN:?set by make}"
mkdir -p .run/prometheus
"$JAEGER_BIN" --config envoy/jaeger/jaeger.yaml > .run/jaeger.log 2>&1 &
jaeger_pid=$!
trap 'kill $jaeger_pid 2>/dev/null; wait $jaeger_pid 2>/dev/null' EXIT INT TERM
echo "Jaeger: http://localhost:16686 (traces of make run's requests); Prometheus: http://localhost:9090"
prometheus --config.file=envoy/prometheus/prometheus.yml --storage.tsdb.path=.run/prometheus \
  --web.listen-address=127.0.0.1:9090
