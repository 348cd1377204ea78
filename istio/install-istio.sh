#!/usr/bin/env bash
# Builds Istio's control plane (pilot-discovery, i.e. istiod) and istioctl from the Go module
# istio.io/istio into target/tools/istio-<commit>, once. The module proxy serves Istio only as
# snapshots of its master branch (no release tags), so the snapshot is pinned by its commit;
# VERSION names the release line that snapshot belongs to (its VERSION file says 1.31).
#
# istiod gets one fix, applied to a copy of the module by istio/without-kubernetes.py: with no
# Kubernetes registry (`--registries=`, how it runs here) this snapshot dereferences a nil
# multicluster controller while building its ServiceEntry registry and exits at startup. The
# fix gives that registry an empty Namespace collection instead, as a cluster without namespace
# metadata would. istioctl is built unchanged.
#
# Go's module and build caches stay where Go keeps them (-trimpath keeps the build cache valid
# from any checkout), so a fresh clone on the same machine relinks in about a minute.
# Prints the directory.
set -euo pipefail
cd "$(dirname "$0")/.."
MODULE=istio.io/istio
SNAPSHOT=v0.0.0-20260827124520-eed52ebb66ad
COMMIT=${SNAPSHOT##*-}
VERSION=1.31-dev
DIR=target/tools/istio-$COMMIT
if [[ ! -x $DIR/pilot-discovery || ! -x $DIR/istioctl ]]; then
  command -v go >/dev/null || {
    echo "building istiod needs Go (>= 1.25): install it and run make again" >&2
    exit 1
  }
  mkdir -p "$DIR"
  echo "building istiod and istioctl $VERSION ($MODULE@$SNAPSHOT) with $(go version | cut -d' ' -f3); the first build takes about ten minutes" >&2
  flags="-X istio.io/istio/pkg/version.buildVersion=$VERSION -X istio.io/istio/pkg/version.buildGitRevision=$COMMIT -X istio.io/istio/pkg/version.buildStatus=Modified"
  export GOFLAGS=-buildvcs=false
  source=$(go mod download -json "$MODULE@$SNAPSHOT" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$DIR/src"
  cp -r "$source" "$DIR/src"
  chmod -R u+w "$DIR/src"
  python3 istio/without-kubernetes.py "$DIR/src"
  (cd "$DIR/src" && go build -trimpath -ldflags "$flags" -o ../pilot-discovery ./pilot/cmd/pilot-discovery)
  rm -rf "$DIR/src"
  GOBIN=$(pwd)/$DIR go install -trimpath -ldflags "${flags/Modified/Clean}" "$MODULE/istioctl/cmd/istioctl@$SNAPSHOT"
fi
echo "$DIR"
