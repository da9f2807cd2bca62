#!/usr/bin/env bash
# Sets up what is missing (scripts/setup.sh), then runs every test: unit tests, and the
# integration tests that start their own Temporal dev server and redis-server on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
DRIFT_SETUP_BROWSER=1 bash scripts/setup.sh
export PATH="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))'):$PATH"
export DRIFT_LOG="${DRIFT_LOG:-error}"
cargo test --all-targets "$@"
bash scripts/browser-test.sh
