#!/usr/bin/env bash
# Real speech from distinct people for the voice-cloning safety tests and
# benchmarks/speaker_similarity.py: Debian's festival with diphone/HTS voices (each recorded
# from a different person) and espeak-ng. Through apt as root (sudo when not root).
# Idempotent and quiet: nothing is downloaded when every voice is installed.
set -euo pipefail
PACKAGES=(festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k
          festvox-itapc16k espeak-ng)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "speech ok: festival and espeak-ng voices installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "speech installed: ${missing[*]}"
