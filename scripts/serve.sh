#!/usr/bin/env bash
# The main job: set-up if needed, then the daemon on 127.0.0.1:50051 with a
# model for every implemented task (config/serve.toml): the task's default
# checkpoint when it is cached or the hub is reachable, otherwise the locally
# built fixture model. Extra arguments go to inferd (see `inferd --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/scripts/setup.sh"

log "building fallback fixture models (cached under target/fixtures)"
"$VENV/bin/python" tests/fixtures/make_fixtures.py

exec "$ROOT/target/release/inferd" --config "$ROOT/config/serve.toml" "$@"
