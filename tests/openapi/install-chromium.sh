#!/usr/bin/env bash
# Installs Debian's Chromium once (idempotent), for the API docs page's test in a real browser
# (playwright-core drives it; a test tool's own browser download cannot work offline).
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
echo "installing chromium (Debian package)" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
