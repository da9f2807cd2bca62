#!/usr/bin/env bash
# Runs the browser tests of the demo page and of the screen kit (examples/react): starts
# `drift dev` on a free port with a throwaway data folder, drives it with Debian's chromium
# through playwright-core, then stops it.
# Screenshots land in test-artifacts/. Before them, the TypeScript client's checks and tests
# (scripts/client-test.sh); after them, the docs' curl examples.
set -euo pipefail
cd "$(dirname "$0")/.."
# The binary the test command has just built with its tests: `cargo build --bin` alone resolves
# dependency features without the dev-dependencies and would compile much of the tree again.
cargo test --release -q --workspace --all-targets --no-run
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
port=$(free_port)
# examples/react is served from its own origins (on React 19, and 18), which the gateway must allow.
example_port=$(free_port)
react18_port=$(free_port)
data=$(mktemp -d)
log="$data/drift-dev.log"
"${CARGO_TARGET_DIR:-target}/release/drift" dev --data-dir "$data" --listen "127.0.0.1:$port" \
  --allowed-origins "http://127.0.0.1:$example_port,http://127.0.0.1:$react18_port" >"$log" 2>&1 &
dev=$!
example=""
react18=""
cleanup() {
  for p in $example $react18; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  kill "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; rm -rf "$data"
}
trap cleanup EXIT
echo "browser tests: waiting for drift dev on 127.0.0.1:$port"
for _ in $(seq 1 180); do
  if curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$dev" 2>/dev/null; then cat "$log"; echo "drift dev exited early" >&2; exit 1; fi
  sleep 0.5
done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$log"; echo "drift dev never became ready" >&2; exit 1; }
# The page's modules: formatted (Prettier) and linted (ESLint), with the tools tests/browser installs.
(cd web-demo && ../tests/browser/node_modules/.bin/prettier --check "*.js" "*.mjs" "editor/src.js" \
  && ../tests/browser/node_modules/.bin/eslint --config eslint.config.mjs .) \
  || { echo "the demo page's modules need formatting or fixes (see above)" >&2; exit 1; }
# The page's built modules are committed (the binary embeds them): each must be what its source
# builds to today.
fresh=$(mktemp -d)
(cd web-demo/editor && OUT="$fresh" npm run -s build)
for f in editor.js drift-client.js drift-screen.js; do
  cmp -s "$fresh/$f" "web-demo/vendor/$f" \
    || { rm -rf "$fresh"; echo "web-demo/vendor/$f is stale: run 'npm run build' in web-demo/editor and commit it" >&2; exit 1; }
done
rm -rf "$fresh"
bash scripts/client-test.sh "http://127.0.0.1:$port" "$data/dev-api-key" || { tail -50 "$log"; exit 1; }
bash scripts/react-test.sh
mkdir -p test-artifacts
(cd tests/browser && DRIFT_DEMO_URL="http://127.0.0.1:$port" DRIFT_ARTIFACTS="$PWD/../../test-artifacts/" node --test demo.test.mjs) || { tail -50 "$log"; exit 1; }
# The hosted answer page, opened from answer links by people with no credential.
(cd tests/browser && DRIFT_DEMO_URL="http://127.0.0.1:$port" DRIFT_API_KEY_FILE="$data/dev-api-key" \
  DRIFT_ARTIFACTS="$PWD/../../test-artifacts/" node --test answer.test.mjs) || { tail -50 "$log"; exit 1; }
# The approval pattern end to end: webhook -> the example mailer -> a real SMTP server -> the link.
(cd tests/browser && DRIFT_DEMO_URL="http://127.0.0.1:$port" DRIFT_API_KEY_FILE="$data/dev-api-key" \
  DRIFT_WEBHOOK_SECRET_FILE="$data/webhook-secret" DRIFT_ARTIFACTS="$PWD/../../test-artifacts/" \
  node --test approval.test.mjs) || { tail -50 "$log"; exit 1; }
# The screen kit through examples/react, served by esbuild as its README says.
# serve NAME PORT COMMAND…: runs a page server in the background until the page answers.
serve() {
  local name=$1 port=$2
  shift 2
  "$@" >"$data/$name.log" 2>&1 &
  served=$!
  for _ in $(seq 1 60); do
    if curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1; then return; fi
    if ! kill -0 "$served" 2>/dev/null; then cat "$data/$name.log"; echo "$name did not start" >&2; exit 1; fi
    sleep 0.5
  done
}
# react_tests PORT ARTIFACTS: the kit's browser tests against the example served on PORT.
react_tests() {
  (cd tests/browser && DRIFT_DEMO_URL="http://127.0.0.1:$port" DRIFT_EXAMPLE_URL="http://127.0.0.1:$1" \
    DRIFT_API_KEY_FILE="$data/dev-api-key" DRIFT_ARTIFACTS="$PWD/../../test-artifacts/$2" node --test react.test.mjs) \
    || { tail -50 "$log"; exit 1; }
}
# The screen kit through examples/react, served by esbuild as its README says.
export DRIFT_URL="http://127.0.0.1:$port" DRIFT_API_KEY_FILE="$data/dev-api-key"
serve example "$example_port" env PORT="$example_port" bash -c 'cd examples/react && exec node build.mjs --serve'
example=$served
react_tests "$example_port" ""
# And on React 18, the other major the kit's peer range names.
serve react18 "$react18_port" env PORT="$react18_port" node tests/browser/react18.mjs
react18=$served
curl -fs "http://127.0.0.1:$react18_port/app.js" -o "$data/react18.js"
grep -q 'ReactVersion = "18\.' "$data/react18.js" \
  || { echo "the React 18 build of examples/react is not on React 18" >&2; exit 1; }
react_tests "$react18_port" "react18/"
bash scripts/readme-examples.sh "$port" "$data" || { tail -50 "$log"; exit 1; }
# The dev key goes only to a page reached by address or as localhost, never through another name
# (a DNS-rebinding page would otherwise be handed it).
own=$(curl -fs "http://127.0.0.1:$port/demo/config.js")
other=$(curl -fs -H "Host: rebound.example:$port" "http://127.0.0.1:$port/demo/config.js")
case "$own" in *'"apiKey":"drift_'*) ;; *) echo "the demo page got no dev key: $own" >&2; exit 1 ;; esac
case "$other" in *'"apiKey":null'*) echo "demo key: given to the local page, refused to another host name" ;; *) echo "the dev key leaked to another host name: $other" >&2; exit 1 ;; esac
