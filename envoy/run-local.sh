#!/usr/bin/env bash
# `make run`: starts the services of envoy/edge.json and Envoy (envoy/envoy.yaml) on loopback, prints the
# README's walkthrough, and stops everything on Ctrl-C. `make mesh` (EDGE_MESH=istiod) starts a
# local istiod too, and Envoy as the ingress gateway it configures. The services are supervised as
# Kubernetes would: one that exits is started again after a backoff (1 s, doubling to 30 s,
# back to 1 s once it has run for a minute) while Envoy and the others keep serving. Data
# lives in .run/data (SQLite files and the authority's signing key) and survives restarts;
# logs go to .run/*.log, each service's current pid to .run/<name>.pid.
set -uo pipefail
cd "$(dirname "$0")/.."
ENVOY=${ENVOY_BIN:?set by make}
BIN=${EDGE_BIN_DIR:-target/debug}
mkdir -p .run/data

supervisors=()
envoy_pid=
istiod_pid=
docs_pid=
storefront_pid=
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for pid in "${supervisors[@]}" $envoy_pid $istiod_pid $docs_pid $storefront_pid; do kill -TERM "$pid" 2>/dev/null; done
  wait 2>/dev/null
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

# Runs one service until told to stop, starting it again whenever it exits.
supervise() {
  local name=$1 binary=$2 port=$3 own=$4 delay=1 pid started status
  # Ctrl-C is the main script's to handle; it sends TERM, which stops the service first.
  trap '' INT
  trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 0' TERM
  while :; do
    started=$SECONDS
    : > ".run/$name.out"
    # Its own session: Ctrl-C reaches only this script, which stops everything in order.
    env $own LISTEN_ADDR=127.0.0.1:$port setsid "$BIN/$binary" > ".run/$name.out" 2>> ".run/$name.log" &
    pid=$!
    echo "$pid" > ".run/$name.pid"
    wait "$pid" 2>/dev/null
    status=$?
    ((SECONDS - started >= 60)) && delay=1
    echo "edge: $name exited (status $status); restarting it in ${delay}s (log: .run/$name.log)"
    sleep "$delay" & wait $!
    delay=$((delay * 2 > 30 ? 30 : delay * 2))
  done
}

# Where the services export spans (edge.json's `tracing`), as Envoy does.
while IFS= read -r setting; do export "$setting"; done < <("$BIN/edgectl" service-env)
echo "starting services (logs in .run/):"
# envoy/edge.json's services, each after those it calls: `name binary port` lines.
services=$("$BIN/edgectl" services) || exit 1
while read -r name binary port; do
  # What edge.json gives this service alone (`NAME=value` lines, no spaces).
  own=$("$BIN/edgectl" service-env "$name") || exit 1
  # No earlier run's "listening on" line is taken for this one's.
  : > ".run/$name.out"
  supervise "$name" "$binary" "$port" "$own" &
  supervisors+=($!)
  # The next service may call this one: wait for its "listening on" line.
  for _ in $(seq 1 100); do
    grep -q '^listening on' ".run/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '^listening on' ".run/$name.out" 2>/dev/null \
    || { echo "$name did not start in 10 s:"; tail -5 ".run/$name.log"; exit 1; }
  echo "  $name: $(cat ".run/$name.out")"
done <<< "$services"

if [[ ${EDGE_MESH:-} == istiod ]]; then
  # `make mesh`: Envoy is Istio's ingress gateway, configured by a real istiod from istio/
  # (plus the loopback overlay) in .run/mesh/istio, which istiod watches: edit a file there
  # as you would `kubectl apply` it, and istiod pushes the change.
  rm -rf .run/mesh
  "$BIN/edgectl" mesh .run/mesh >/dev/null || exit 1
  setsid "$BIN/edgectl" istiod "${ISTIOD_BIN:?set by make}" .run/mesh > .run/istiod.log 2>&1 &
  istiod_pid=$!
  for _ in $(seq 1 300); do
    (: < /dev/tcp/127.0.0.1/15010) 2>/dev/null && break
    kill -0 "$istiod_pid" 2>/dev/null || { echo "istiod failed to start:"; tail -20 .run/istiod.log; exit 1; }
    sleep 0.1
  done
  echo "  istiod: xDS on 127.0.0.1:15010, watching .run/mesh/istio (log: .run/istiod.log)"
  mapfile -t flags < .run/mesh/envoy.flags
  setsid "$ENVOY" -c .run/mesh/envoy.yaml --use-dynamic-base-id --concurrency 2 -l info "${flags[@]}" > .run/envoy.log 2>&1 &
else
  # The filters' configuration comes from .run/xds, which Envoy watches: `make policy` changes
  # it live.
  "$BIN/edgectl" policy apply >/dev/null
  # EDGE_TARGET=native: the same chain with the filters' native build (libedge_native.so).
  bootstrap=envoy/envoy.yaml
  if [[ ${EDGE_TARGET:-wasm} != wasm ]]; then
    bootstrap=.run/envoy-$EDGE_TARGET.yaml
    "$BIN/edgectl" envoy > "$bootstrap" || exit 1
  fi
  # Its own log (stderr) and its access logs (stdout: the native build's lines) in one file,
  # each access log line flushed at once for whoever reads it (a gateway's wait for 64 KB or
  # pilot-agent's second), still by Envoy's flush thread, not the worker.
  setsid "$ENVOY" -c "$bootstrap" --use-dynamic-base-id --concurrency 2 -l info --file-flush-interval-msec 1000 --file-flush-min-size-kb 0 > .run/envoy.log 2>&1 &
fi
envoy_pid=$!
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST -H 'authorization: Bearer x' localhost:8080/catalog/items)
  [[ $code == 401 ]] && break
  kill -0 "$envoy_pid" 2>/dev/null || { echo "envoy failed to start:"; tail -20 .run/envoy.log; exit 1; }
  sleep 0.1
done
[[ ${code:-} == 401 ]] || { echo "the edge did not become ready; see .run/envoy.log"; exit 1; }

# The API docs page (`make api-docs`): Swagger UI over the edge's /openapi.json, on a static
# server of its own (its origin is in edge.json's cors).
python3 -m http.server 8081 --bind 127.0.0.1 --directory target/tools/api-docs/site > .run/api-docs.log 2>&1 &
docs_pid=$!
# The storefront (`make storefront`): the shop's page, calling the edge as JSON, Connect and
# gRPC-Web (its origin is in edge.json's cors too).
python3 -m http.server 3000 --bind 127.0.0.1 --directory target/tools/storefront/site > .run/storefront.log 2>&1 &
storefront_pid=$!

echo
echo "The edge is up at http://localhost:8080 (Envoy admin: http://localhost:9901)."
echo "API docs: http://localhost:8081 (the edge's description: http://localhost:8080/openapi.json)."
echo "Storefront: http://localhost:3000 (JSON, Connect and gRPC-Web from a browser)."
heading="## Walkthrough"
if [[ ${EDGE_MESH:-} == istiod ]]; then
  echo "Envoy is Istio's ingress gateway here, configured by istiod from .run/mesh/istio."
  heading="### Without a cluster: a local istiod"
fi
echo "Try, in another terminal (README.md, \"${heading#\#* }\"):"
echo
# One source for the banner and the README: its block, printed as it stands.
awk -v heading="$heading" '$0 == heading { section = 1 } section && /^```sh/ { inside = 1; next }
     inside && /^```/ { exit } inside { print "  " $0 }' README.md
echo
echo "Stop: Ctrl-C. A service that crashes is restarted; Envoy and the others keep serving."
wait "$envoy_pid"
echo "envoy exited unexpectedly; see .run/envoy.log"
exit 1
