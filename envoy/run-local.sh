#!/usr/bin/env bash
# `make run`: starts the four services and Envoy (envoy/envoy.yaml) on loopback, prints the
# walkthrough, and stops everything on Ctrl-C. Data lives in .run/data (SQLite files and the
# authority's signing key) and survives restarts; logs go to .run/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY=${ENVOY_BIN:?set by make}
BIN=${EDGE_BIN_DIR:-target/debug}
mkdir -p .run/data

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

start() { # name: waits for the service's "listening on" line
  local name=$1
  : > ".run/$name.out"
  "$BIN/$name" > ".run/$name.out" 2> ".run/$name.log" &
  pids+=($!)
  for _ in $(seq 1 100); do
    grep -q '^listening on' ".run/$name.out" && { echo "  $name: $(cat ".run/$name.out")"; return; }
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "$name failed to start:"; cat ".run/$name.log"; exit 1; }
    sleep 0.1
  done
  echo "$name did not start in 10 s; see .run/$name.log"; exit 1
}

echo "starting services (logs in .run/):"
start customer
start item
start authority
start catalog

# The filters' configuration comes from .run/xds, which Envoy watches: `make policy` changes it
# live.
"$BIN/edgectl" policy apply >/dev/null
"$ENVOY" -c envoy/envoy.yaml --use-dynamic-base-id --concurrency 2 -l info 2> .run/envoy.log &
pids+=($!)
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST -H 'authorization: Bearer x' localhost:8080/catalog/items || true)
  [[ $code == 401 ]] && break
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "envoy failed to start:"; tail -20 .run/envoy.log; exit 1; }
  sleep 0.1
done
[[ ${code:-} == 401 ]] || { echo "the edge did not become ready; see .run/envoy.log"; exit 1; }

cat <<'TXT'

The edge is up at http://localhost:8080 (Envoy admin: http://localhost:9901).
Try, in another terminal:

  curl -s -XPOST -d '{"name":"gopher"}' localhost:8080/auth/signup
  TOKEN=$(curl -s -XPOST -d '{"name":"gopher"}' localhost:8080/auth/signin | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -s -XPOST -H "authorization: bearer $TOKEN" -d '{"title":"Keyboard","price":30000}' localhost:8080/catalog/items
  curl -s localhost:8080/catalog/items
  curl -s localhost:8080/catalog/items/e0e58243-4138-48e5-8aba-448a8888e2ff

Access log: grep access-log .run/envoy.log    Stop: Ctrl-C
TXT
wait -n "${pids[@]}" || true
echo "a process exited unexpectedly; see .run/*.log"
exit 1
