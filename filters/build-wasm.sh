#!/usr/bin/env bash
# Builds the edge's proxy-wasm module (the three filters, edge-wasm) to wasm32-wasip1 and copies
# it to target/filters/edge.wasm, with the test and bench modules beside it.
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
CRATES=(edge-wasm edge-test-panic-filter edge-bench-filter)
# Each module's Cargo profile (Cargo.toml): for size ("z") unless speed was measured to pay.
declare -A PROFILE=(
  [edge-wasm]=wasm-balanced
  [edge-test-panic-filter]=wasm
  [edge-bench-filter]=wasm
)

# The callbacks the deployed module's filters implement. Envoy (proxy-wasm-cpp-host) enters a VM only
# for the callbacks its module exports, and each entry costs ~5,000 instructions
# (bench/INSTRUCTIONS.md); the Rust SDK exports every callback, so wasm-metadce removes the
# others. A callback missing here is never called: add it when a filter starts implementing one.
VM=(memory _initialize proxy_abi_version_0_2_1 proxy_on_memory_allocate proxy_on_vm_start
  proxy_on_configure proxy_on_context_create proxy_on_delete)
GRPC_CALLS=(proxy_on_grpc_receive_initial_metadata proxy_on_grpc_receive
  proxy_on_grpc_receive_trailing_metadata proxy_on_grpc_close)
# The three filters share one module, so each is entered for the union: auth and the access log
# for a request body (proxy_on_request_body, the transcoder's), auth and the access log for the
# response (proxy_on_response_*, the transcoder's streams through the router) and auth and the
# transcoder at the end (proxy_on_log); bench/CHANGES.md has what that costs.
declare -A CALLBACKS=(
  [edge]="proxy_on_tick proxy_on_request_headers proxy_on_request_body proxy_on_response_headers proxy_on_response_body proxy_on_response_trailers proxy_on_log ${GRPC_CALLS[*]}"
)

# Keeps only the VM's exports and the filter's callbacks (and the code they reach).
trim_callbacks() {
  local name=$1 file=$2 exports export nodes="" roots=""
  read -r -a exports <<< "${VM[*]} ${CALLBACKS[$name]}"
  for export in "${exports[@]}"; do
    roots+="\"$export\","
    nodes+=",{\"name\":\"$export\",\"export\":\"$export\"}"
  done
  echo "[{\"name\":\"outside\",\"root\":true,\"reaches\":[${roots%,}]}$nodes]" > "$file.graph.json"
  wasm-metadce --all-features "$file" --graph-file "$file.graph.json" -o "$file.trimmed" >/dev/null
  rm "$file.graph.json"
  local kept
  kept=$(wasm-opt --all-features "$file.trimmed" --print 2>/dev/null | grep -c '^ (export ')
  ((kept == ${#exports[@]})) || { echo "$file: kept $kept exports, expected ${#exports[@]}" >&2; exit 1; }
  mv "$file.trimmed" "$file"
}

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
  # Written beside under a name of this run's own, then renamed: a filter Envoy is loading,
  # or another build (two `make run`s at once), never sees half a file.
  staged="$OUT/$name.wasm.$$"
  cp -p "$src" "$staged"
  if [[ -n ${CALLBACKS[$name]:-} ]]; then
    trim_callbacks "$name" "$staged"
    touch -r "$src" "$staged"
  fi
  mv "$staged" "$OUT/$name.wasm"
  printf '%-28s %8d bytes\n' "$OUT/$name.wasm" "$(stat -c %s "$OUT/$name.wasm")"
done

# The deployed module stays small enough to pull and load quickly: at most 2 MiB.
size=$(stat -c %s "$OUT/edge.wasm")
((size <= 2097152)) || { echo "$OUT/edge.wasm is $size bytes, over 2 MiB" >&2; exit 1; }
