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
# fresh NAME WHAT: src/NAME.ts must be what openapi-typescript makes of $tmp/NAME.json now.
fresh() {
  node_modules/.bin/openapi-typescript "$tmp/$1.json" -o "$tmp/$1.ts" >/dev/null 2>&1 \
    || { node_modules/.bin/openapi-typescript "$tmp/$1.json" -o "$tmp/$1.ts"; exit 1; }
  if ! cmp -s "$tmp/$1.ts" "src/$1.ts"; then
    diff -u "src/$1.ts" "$tmp/$1.ts" | head -40 || true
    echo "client: clients/typescript/src/$1.ts is stale: $2 changed. With drift dev running," >&2
    echo "        run 'npm run types' in clients/typescript, check the client still fits, and commit it." >&2
    exit 1
  fi
}
curl -fs "$base/v3/openapi.json" >"$tmp/openapi.json"
fresh openapi "the API document"
curl -fs "$base/v3/asyncapi.json" >"$tmp/live.json"
# The live protocol's schemas and payloads, wrapped as an OpenAPI document for the same generator.
node scripts/asyncapi-types.mjs "$tmp/live.json" "$tmp/asyncapi.json"
fresh asyncapi "the live protocol's document"
echo "client: generated types match /v3/openapi.json and /v3/asyncapi.json"
../../tests/browser/node_modules/.bin/prettier --check src/index.ts src/common.ts src/live.ts src/screen.ts "test/*.mjs" "scripts/*.mjs" \
  || { echo "client: run prettier --write on clients/typescript (see above)" >&2; exit 1; }
node_modules/.bin/tsc -p tsconfig.json
DRIFT_URL="$base" DRIFT_API_KEY="$key" node --experimental-websocket --test test/
