#!/usr/bin/env bash
# Runs the documentation's shell examples (the API, limits, authentication, live, clients and
# webhooks pages, in that order) against a running `drift dev`, so they keep working as
# written. Usage: readme-examples.sh PORT DATA_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
port=$1 data=$2
script="$data/readme-examples.sh" out="$data/readme-examples.out"
python3 - "$port" "$data" >"$script" <<'PY'
import re, sys
port, data = sys.argv[1], sys.argv[2].rstrip("/")
pages = ["api", "limits", "auth", "live", "clients", "webhooks"]
text = "\n".join(open(f"docs/{p}.md").read() for p in pages)
blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
body = "\n".join(blocks)
for host in ("localhost:8080", "127.0.0.1:8080"):
    body = body.replace(host, f"127.0.0.1:{port}")
print("set -euo pipefail\n" + body.replace(".drift/", data + "/"))
PY
if ! timeout 120 bash "$script" >"$out" 2>&1; then
  cat "$out"
  echo "the docs' examples failed (the script is $script)" >&2
  exit 1
fi
echo "docs examples: ok ($(grep -c '^' "$out") lines of output)"
