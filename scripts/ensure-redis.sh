#!/usr/bin/env bash
# Make sure a redis-server binary (Redis >= 6.2, for XAUTOCLAIM) is on PATH; install it if not.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
echo "redis-server not found: installing Debian's redis-server package" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "error: installing redis-server needs root (or install it yourself: apt-get install redis-server)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# The package's own service is not needed: the tests and `make run` start their own servers.
