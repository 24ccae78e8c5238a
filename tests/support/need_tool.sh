#!/usr/bin/env bash
# Prints the path of the program TOOL, installing the Debian package PACKAGE
# first when there is none (the balancer tests need nginx, the README's
# examples jq). Needs root (or password-less sudo) and the Debian package
# mirrors the first time.
#   tests/support/need_tool.sh TOOL PACKAGE
set -euo pipefail
TOOL="$1"
PACKAGE="$2"
find_tool() {
  command -v "$TOOL" 2> /dev/null && return 0
  for dir in /usr/sbin /usr/local/sbin /sbin /usr/bin; do
    if [[ -x "$dir/$TOOL" ]]; then
      echo "$dir/$TOOL"
      return 0
    fi
  done
  return 1
}
find_tool && exit 0
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  SUDO="sudo -n"
fi
exec 9> "/tmp/inferd-need-$TOOL.lock"
flock 9
if ! find_tool > /dev/null; then
  echo "need_tool: installing $PACKAGE (Debian) for $TOOL" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y -q --no-install-recommends "$PACKAGE" >&2; then
    $SUDO apt-get update -q >&2
    $SUDO apt-get install -y -q --no-install-recommends "$PACKAGE" >&2
  fi
fi
find_tool
