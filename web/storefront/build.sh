#!/usr/bin/env bash
# Builds the storefront into target/tools/storefront/site (idempotent): its npm packages
# (pinned in package.json, installed into target/tools/storefront and linked here), TypeScript
# messages and service descriptors from the platform's protos (buf + protoc-gen-es, both from
# npm), a type check (tsc) and one bundle (esbuild).
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
tools=$root/target/tools/storefront
mkdir -p "$tools/site"
if ! cmp -s package.json "$tools/package.json" || [[ ! -x $tools/node_modules/.bin/esbuild ]]; then
  cp package.json "$tools/package.json"
  # No install scripts: esbuild's and buf's binaries come as platform packages.
  npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$tools"
fi
ln -sfn "$tools/node_modules" node_modules
rm -rf src/gen
node_modules/.bin/buf generate "$root/proto" --template buf.gen.yaml
node_modules/.bin/tsc -p .
node_modules/.bin/esbuild src/main.ts --bundle --format=esm --target=es2022 \
  --outfile="$tools/site/app.js" --log-level=warning
cp index.html style.css "$tools/site/"
