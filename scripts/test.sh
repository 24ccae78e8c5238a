#!/usr/bin/env bash
# The test command: set-up if needed (virtualenv, release build), fixtures
# and reference outputs from transformers, the test-only plugins, then every
# unit and end-to-end test, and the Python client's tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/scripts/setup.sh"

log "building fixtures and transformers reference outputs (cached under target/fixtures)"
"$VENV/bin/python" tests/fixtures/make_fixtures.py

log "building the test-only plugins into target/test-plugins"
cargo build --release -p inferd-testplugin-panicky -p inferd-testplugin-abi-mismatch --target-dir target/test-plugins

log "running the tests"
cargo test --release "$@"

log "running the Python client's tests against the daemon"
"$VENV/bin/python" clients/python/tests/test_client.py

log "every test passed"
