#!/usr/bin/env bash
# Installs Debian's Prometheus once (idempotent): `make test` checks the SLO rules with its
# promtool and runs a real Prometheus against a test edge; `make observe` runs one against
# `make run`. Nothing is started here.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
echo "installing prometheus (Debian package: prometheus and promtool)" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
