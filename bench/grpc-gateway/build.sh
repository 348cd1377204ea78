#!/usr/bin/env bash
# Builds the grpc-gateway peer of `make bench` into target/tools/grpc-gateway-peer/peer, once
# per change of its sources or the catalog's proto: protoc (grpcio-tools from PyPI, in a
# virtualenv) with protoc-gen-go, protoc-gen-go-grpc and protoc-gen-grpc-gateway (pinned,
# built with Go) generates the catalog's Go code into bench/grpc-gateway/gen (not committed:
# it follows the protos), then Go builds main.go against the modules go.sum pins.
set -euo pipefail
cd "$(dirname "$0")/../.."
tools=$(pwd)/target/tools
out=$tools/grpc-gateway-peer
command -v go >/dev/null || {
  echo "the grpc-gateway peer needs Go (>= 1.25): install it and run make bench again" >&2
  exit 1
}

venv=$tools/protoc-grpcio-tools-1.76.0
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import grpc_tools' 2>/dev/null; then
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check grpcio-tools==1.76.0
fi
well_known=$("$venv/bin/python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')

# Each plugin at its pin, in a directory of its own: `plugin NAME PACKAGE VERSION`.
plugin() {
  local dir=$tools/protoc-plugins/$1-$3
  [[ -x $dir/$1 ]] || GOBIN=$dir go install -trimpath "$2@$3"
  echo "$dir"
}
PATH=$(plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go v1.36.12):$PATH
PATH=$(plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc v1.6.2):$PATH
PATH=$(plugin protoc-gen-grpc-gateway github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway v2.34.0):$PATH

module=edge.example/bench/grpcgateway/gen
# catalog.proto names no Go package: say where its code goes.
mapping="Mplatform/catalog.proto=$module/catalog;catalog"
gen=bench/grpc-gateway/gen
rm -rf "$gen" && mkdir -p "$gen"
"$venv/bin/python" -m grpc_tools.protoc -I proto -I "$well_known" \
  --go_out="$gen" --go_opt="module=$module,$mapping" \
  --go-grpc_out="$gen" --go-grpc_opt="module=$module,$mapping" \
  --grpc-gateway_out="$gen" --grpc-gateway_opt="module=$module,$mapping" \
  platform/catalog.proto

mkdir -p "$out"
(cd bench/grpc-gateway && GOFLAGS=-buildvcs=false go build -trimpath -o "$out/peer.partial" .)
mv "$out/peer.partial" "$out/peer"
echo "$out/peer"
