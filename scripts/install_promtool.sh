#!/usr/bin/env bash
# promtool, which checks and unit-tests the alert rules (tests/cluster/test_alerts.py): Debian's
# prometheus package ships it, through apt as root (sudo when not root). Idempotent and quiet:
# nothing is downloaded when it is installed. The package's Prometheus server is not started
# (no init system runs it here, and nothing needs it).
set -euo pipefail
if command -v promtool >/dev/null; then
  echo "promtool ok: $(promtool --version 2>&1 | head -1)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "promtool installed: $(promtool --version 2>&1 | head -1)"
