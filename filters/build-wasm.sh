#!/usr/bin/env bash
# Builds the three proxy-wasm filters to wasm32-wasip1 and copies them to target/filters/.
#
# Where rustup has the wasm32-wasip1 target (a laptop with internet), that is used. Otherwise
# (Debian 12 without internet, as in CI) Debian's rustc-web 1.96 builds std from its own
# source (`-Z build-std`), linking with lld and Debian's wasi-libc; install-wasm-toolchain.sh
# installs those packages.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=wasm32-wasip1
OUT=target/filters
# edge-test-panic-filter is test-only (target/filters/test-panic.wasm): the recovery test's
# deliberately failing filter; edge-bench-filter (target/filters/bench.wasm) is make bench's
# decomposition filter. No configuration edgectl renders references either.
CRATES=(edge-auth-wasm edge-transcoder-wasm edge-access-log-wasm edge-test-panic-filter edge-bench-filter)
# Each filter's Cargo profile (Cargo.toml): for size ("z") unless speed was measured to pay.
declare -A PROFILE=(
  [edge-auth-wasm]=wasm-speed
  [edge-transcoder-wasm]=wasm-balanced
  [edge-access-log-wasm]=wasm
  [edge-test-panic-filter]=wasm
  [edge-bench-filter]=wasm
)

build() {
  local profile=$1; shift
  local packages=()
  for crate in "$@"; do packages+=(-p "$crate"); done
  if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    cargo build --profile "$profile" --target "$TARGET" --target-dir target/wasm "${packages[@]}"
  else
    for tool in /usr/bin/rustc /usr/bin/cargo /usr/bin/rust-lld /usr/lib/wasm32-wasi/libc.a; do
      [[ -e $tool ]] || { echo "missing $tool: run 'make toolchain' first" >&2; exit 1; }
    done
    # Debian's cargo and rustc must win over rustup's proxies (std source and compiler must match).
    env -u RUSTUP_TOOLCHAIN -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
      PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
      CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-L native=/usr/lib/wasm32-wasi" \
      /usr/bin/cargo build --profile "$profile" --target "$TARGET" --target-dir target/wasm \
        -Z build-std=std,panic_abort "${packages[@]}"
  fi
}

for profile in $(printf '%s\n' "${PROFILE[@]}" | sort -u); do
  crates=()
  for crate in "${CRATES[@]}"; do [[ ${PROFILE[$crate]} == "$profile" ]] && crates+=("$crate"); done
  build "$profile" "${crates[@]}"
done

mkdir -p "$OUT"
for crate in "${CRATES[@]}"; do
  name=${crate%-wasm}; name=${name%-filter}; name=${name#edge-}
  src="target/wasm/$TARGET/${PROFILE[$crate]}/${crate//-/_}.wasm"
  # cp -p keeps the mtime, so Make sees an unchanged filter as up to date.
  cp -p "$src" "$OUT/$name.wasm"
  printf '%-28s %8d bytes\n' "$OUT/$name.wasm" "$(stat -c %s "$OUT/$name.wasm")"
done

# The deployed filters stay small enough to pull and load quickly: at most 1 MiB each.
for name in auth transcoder access-log; do
  size=$(stat -c %s "$OUT/$name.wasm")
  ((size <= 1048576)) || { echo "$OUT/$name.wasm is $size bytes, over 1 MiB" >&2; exit 1; }
done
