#!/usr/bin/env bash
# Installs Debian's PostgreSQL server once (idempotent): the end-to-end test that runs the data
# services on PostgreSQL starts its own throwaway server with it. Nothing is started here.
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  exit 0
fi
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
echo "installing postgresql (Debian package, for the PostgreSQL end-to-end test)" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
