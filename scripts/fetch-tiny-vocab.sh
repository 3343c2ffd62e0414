#!/usr/bin/env bash
# Extract the Llama-3 tokenizer vocabulary (a GGUF file holding no weights) that llama-cpp-python's
# source archive ships for its own tests. The `tiny` test model of omost-llm pairs it with random
# weights, so tests and CI need no model download. Idempotent; prints the vocab file's path.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
DEST="${OMOST_LLM_VOCAB_DIR:-$VENV/share/omost-llm}"
VOCAB="ggml-vocab-llama-bpe.gguf"
if [[ -s "$DEST/$VOCAB" ]]; then
    echo "$DEST/$VOCAB"
    exit 0
fi
mkdir -p "$DEST"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/python" -m pip download --quiet --no-binary :all: --no-deps --dest "$WORK" \
    "llama-cpp-python==0.3.16" >&2
ARCHIVE="$(ls "$WORK"/llama_cpp_python-*.tar.gz)"
MEMBER="$(tar -tzf "$ARCHIVE" | grep "vendor/llama.cpp/models/$VOCAB\$" | head -n 1)"
tar -xzf "$ARCHIVE" -C "$WORK" "$MEMBER"
cp "$WORK/$MEMBER" "$DEST/$VOCAB"
echo "$DEST/$VOCAB"
