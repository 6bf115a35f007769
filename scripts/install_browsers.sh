#!/usr/bin/env bash
# The browser the playground's tests drive (tests/graph/test_playground_browser.py): Debian's
# chromium and chromium-driver, through apt as root (sudo when not root). Idempotent and quiet:
# nothing is downloaded when both are installed. playwright (a dev extra) drives
# /usr/bin/chromium; it never downloads a browser of its own.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "browsers ok: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "browsers installed: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
