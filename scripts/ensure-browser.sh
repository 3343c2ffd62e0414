#!/usr/bin/env bash
# Make sure a Chromium for the browser tests is installed (Debian's package; Playwright drives it
# through its executable path, so no browser is ever downloaded by Playwright itself).
set -euo pipefail
CHROMIUM="${OMOST_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
echo "Chromium not found at $CHROMIUM: installing Debian's chromium package" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "error: installing chromium needs root (or install it yourself: apt-get install chromium)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
