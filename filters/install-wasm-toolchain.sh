#!/usr/bin/env bash
# Installs what building the filters for wasm32-wasip1 needs, once (idempotent).
#
# With rustup's wasm32-wasip1 target installed (a laptop with internet: `rustup target add
# wasm32-wasip1`) nothing is needed. Otherwise (Debian 12 without internet, as in CI) Debian's
# rustc-web 1.96 with its std source builds std for the target (`-Z build-std`); rust-lld is
# lld-22 (rust-web-llvm provides the link but does not depend on it), and wasi-libc is the libc.
# Either way, binaryen's wasm-metadce trims the callbacks a filter does not use (build-wasm.sh).
set -euo pipefail

install_debian() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  echo "installing ${missing[*]} (Debian packages for the wasm32-wasip1 build)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

command -v wasm-metadce >/dev/null || install_debian binaryen

if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  exit 0
fi
install_debian rustc-web cargo-web rust-web-src rust-web-llvm lld-22 llvm-22 wasi-libc
# build-std needs the compiler and the std source of exactly the same version.
compiler=$(dpkg-query -W -f='${Version}' rustc-web)
source=$(dpkg-query -W -f='${Version}' rust-web-src)
if [[ $compiler != "$source" ]]; then
  echo "rustc-web ($compiler) and rust-web-src ($source) differ; build-std needs them equal" >&2
  exit 1
fi
