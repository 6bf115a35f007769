#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with the project and its locked
# dependencies (CPU use; torch 2.11.0 from PyPI runs on machines without a GPU).
#   bash scripts/setup.sh          # add --gpu on a CUDA machine for flash-attn
#   bash scripts/setup.sh --browsers   # also Debian's chromium for the browser tests (apt, root)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip uv
# requirements.lock pins every dependency (regenerate: uv pip compile pyproject.toml
# --extra dev -o requirements.lock); the project itself installs editable on top.
# --compile-bytecode: every Ray replica imports torch, transformers and qwen-tts; compiling
# them from source at each start (no .pyc yet, or never with PYTHONDONTWRITEBYTECODE=1) cost
# `qtts demo` over a minute of CPU on 2 cores.
.venv/bin/uv pip install -q --python .venv/bin/python --compile-bytecode -r requirements.lock
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
# a .venv made before that flag: compile it once (uv compiles only what it installs)
if ! compgen -G ".venv/lib/python3*/site-packages/torch/__pycache__/__init__.*.pyc" >/dev/null; then
  .venv/bin/python -m compileall -q -j 0 .venv/lib/python3*/site-packages >/dev/null || true
fi
if [ "${1:-}" = "--gpu" ]; then
  .venv/bin/uv pip install -q --python .venv/bin/python --no-build-isolation -e ".[gpu]"
fi
if [ "${1:-}" = "--browsers" ] || [ "${2:-}" = "--browsers" ]; then
  bash scripts/install_browsers.sh
fi
.venv/bin/python -c "import qwen_tts, ray, torch; print('setup ok: torch', torch.__version__, '| ray', ray.__version__)" 2>/dev/null | tail -1
