#!/usr/bin/env bash
# The TypeScript client (clients/typescript) against a running gateway: its types must be what
# openapi-typescript makes of the gateway's /v3/openapi.json today (else they are stale), it must
# format, type-check and build, and its tests run against the gateway.
# Usage: scripts/client-test.sh BASE_URL KEY_FILE   (scripts/browser-test.sh calls it)
set -euo pipefail
cd "$(dirname "$0")/../clients/typescript"
base="$1"
key=$(cat "$2")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fs "$base/v3/openapi.json" >"$tmp/openapi.json"
node_modules/.bin/openapi-typescript "$tmp/openapi.json" -o "$tmp/openapi.ts" >/dev/null 2>&1 \
  || { node_modules/.bin/openapi-typescript "$tmp/openapi.json" -o "$tmp/openapi.ts"; exit 1; }
if ! cmp -s "$tmp/openapi.ts" src/openapi.ts; then
  diff -u src/openapi.ts "$tmp/openapi.ts" | head -40 || true
  echo "client: clients/typescript/src/openapi.ts is stale: the API document changed. With drift dev running," >&2
  echo "        run 'npm run types' in clients/typescript, check the client still fits, and commit it." >&2
  exit 1
fi
curl -fs "$base/v3/asyncapi.json" >"$tmp/asyncapi.json"
node scripts/asyncapi-types.mjs "$tmp/asyncapi.json" "$tmp/live.json"
node_modules/.bin/openapi-typescript "$tmp/live.json" -o "$tmp/asyncapi.ts" >/dev/null 2>&1 \
  || { node_modules/.bin/openapi-typescript "$tmp/live.json" -o "$tmp/asyncapi.ts"; exit 1; }
if ! cmp -s "$tmp/asyncapi.ts" src/asyncapi.ts; then
  diff -u src/asyncapi.ts "$tmp/asyncapi.ts" | head -40 || true
  echo "client: clients/typescript/src/asyncapi.ts is stale: the live protocol's document changed. With drift dev" >&2
  echo "        running, run 'npm run types' in clients/typescript, check the client still fits, and commit it." >&2
  exit 1
fi
echo "client: generated types match /v3/openapi.json and /v3/asyncapi.json"
../../tests/browser/node_modules/.bin/prettier --check src/index.ts src/common.ts src/live.ts src/screen.ts "test/*.mjs" "scripts/*.mjs" \
  || { echo "client: run prettier --write on clients/typescript (see above)" >&2; exit 1; }
node_modules/.bin/tsc -p tsconfig.json
DRIFT_URL="$base" DRIFT_API_KEY="$key" node --experimental-websocket --test test/
