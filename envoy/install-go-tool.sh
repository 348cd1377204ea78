#!/usr/bin/env bash
# Builds a Go program from its module, at a pinned version, into
# target/tools/NAME-VERSION/NAME, once (idempotent), and prints that path. The module is built
# as the main module from its downloaded source, so its own go.mod applies (replace directives
# included, which `go install pkg@version` refuses: Jaeger has one), as in its release builds.
# Go's module and build caches stay where Go keeps them (-trimpath keeps the build cache valid
# from any checkout), so a fresh clone on the same machine relinks in seconds.
# Usage: install-go-tool.sh NAME MODULE VERSION PACKAGE
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 module=$2 version=$3 package=$4
dir=$(pwd)/target/tools/$name-$version
if [[ ! -x $dir/$name ]]; then
  command -v go >/dev/null || {
    echo "building $name needs Go (>= 1.25): install it and run make again" >&2
    exit 1
  }
  mkdir -p "$dir"
  echo "building $name $version ($module) with $(go version | cut -d' ' -f3)" >&2
  source=$(go mod download -json "$module@$version" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  (cd "$source" && GOFLAGS=-buildvcs=false go build -trimpath -o "$dir/$name.partial" "./$package")
  mv "$dir/$name.partial" "$dir/$name"
fi
echo "$dir/$name"
