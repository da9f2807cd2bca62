#!/usr/bin/env bash
# Sets up what is missing, then runs `drift dev`: Temporal, Redis, gateway, worker, examples and
# the demo page on http://127.0.0.1:8080. Extra arguments go to `drift dev` (see `drift dev --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))'):$PATH"
echo "dev: building drift (release; the first build takes several minutes)"
exec cargo run --release -- dev "$@"
