#!/usr/bin/env bash
# The screen kit for React (clients/react): formatted, type-checked and built against the client
# (scripts/client-test.sh has built clients/typescript/dist), and its unit tests (vitest in
# happy-dom, over an in-memory client). The kit against a real gateway is in
# tests/browser/react.test.mjs, through examples/react.
set -euo pipefail
cd "$(dirname "$0")/.."
prettier=tests/browser/node_modules/.bin/prettier
"$prettier" --check clients/react/src clients/react/test clients/react/drift.css clients/react/vitest.config.ts \
  examples/react/src examples/react/build.mjs examples/react/www/index.html \
  || { echo "react: run prettier --write on clients/react and examples/react (see above)" >&2; exit 1; }
(cd clients/react && node_modules/.bin/tsc -p tsconfig.json && node_modules/.bin/tsc -p tsconfig.test.json \
  && node_modules/.bin/vitest run --reporter=dot)
# The example type-checks against the kit as an app would use it.
(cd examples/react && node_modules/.bin/tsc -p tsconfig.json)
echo "react: the kit builds and its unit tests pass"
