#!/usr/bin/env bash
# Prints the path of nginx, installing Debian's nginx-light first if there is
# none (the balancer tests put it in front of several daemons). Needs root
# (or sudo) and the Debian package mirrors the first time.
set -euo pipefail
if command -v nginx > /dev/null 2>&1; then
  command -v nginx
  exit 0
fi
for dir in /usr/sbin /usr/local/sbin /sbin; do
  if [[ -x "$dir/nginx" ]]; then
    echo "$dir/nginx"
    exit 0
  fi
done
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  SUDO="sudo -n"
fi
exec 9> /tmp/inferd-need-nginx.lock
flock 9
if [[ ! -x /usr/sbin/nginx ]]; then
  echo "need_nginx: installing nginx-light (Debian) for the balancer tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y -q --no-install-recommends nginx-light >&2; then
    $SUDO apt-get update -q >&2
    $SUDO apt-get install -y -q --no-install-recommends nginx-light >&2
  fi
fi
echo /usr/sbin/nginx
