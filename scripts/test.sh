#!/usr/bin/env bash
# Sets up what is missing (scripts/setup.sh), checks formatting and lints, then runs every
# test: unit tests, the integration tests that start their own Temporal dev server and
# redis-server on free ports, and the demo's browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
DRIFT_SETUP_BROWSER=1 bash scripts/setup.sh
export PATH="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))'):$PATH"
export DRIFT_LOG="${DRIFT_LOG:-error}"
echo "test: cargo fmt --check"
cargo fmt --check || { echo "test: formatting differs; run cargo fmt" >&2; exit 1; }
echo "test: drift-core depends on no I/O crate"
io=$(cargo tree -q -p drift-core -e normal --prefix none | awk '{print $1}' \
  | grep -xE 'tokio|mio|redis|axum|hyper|reqwest|sqlx|tonic|temporalio-.*' | sort -u || true)
[ -z "$io" ] || { echo "test: drift-core must stay pure, but depends on: $io" >&2; exit 1; }
echo "test: each crate uses only the layers below it; no file circles"
python3 scripts/check-layers.py
echo "test: cargo clippy --release --workspace --all-targets -- -D warnings"
# The release profile, like the tests below: the proc-macros and build scripts (the Temporal
# protos' code generation among them) it builds are then the tests' too, not a second set.
cargo clippy -q --release --workspace --all-targets -- -D warnings
# Release, like scripts/dev.sh: one optimised build serves the tests and `drift dev`.
cargo test --release --workspace --all-targets "$@"
bash scripts/browser-test.sh
