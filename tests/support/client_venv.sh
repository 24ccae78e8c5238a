#!/usr/bin/env bash
# Makes, once, a virtualenv under target/client-venvs/NAME holding the given
# pip requirements, and prints its python. The clients the protocol tests
# use (tritonclient, openai) pin their own protobuf and friends, so each
# gets a virtualenv of its own instead of the project's. Safe to call from
# tests running at the same time (one makes it, the others wait).
#   tests/support/client_venv.sh NAME REQUIREMENT...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NAME="$1"
shift
BASE="$ROOT/target/client-venvs"
DIR="$BASE/$NAME"
STAMP="$DIR/.made-with-$(printf '%s\n' "$@" | sha1sum | cut -c1-12)"
mkdir -p "$BASE"
exec 9>"$BASE/.$NAME.lock"
flock 9
if [[ ! -f "$STAMP" ]]; then
  echo "client_venv: making $DIR with $*" >&2
  python3 -m venv --clear "$DIR" >&2
  "$DIR/bin/pip" install --disable-pip-version-check -q "$@" >&2
  touch "$STAMP"
fi
echo "$DIR/bin/python"
