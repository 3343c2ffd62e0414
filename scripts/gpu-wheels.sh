#!/usr/bin/env bash
# Wheels the GPU suite needs on a machine without network (Python 3.12, torch, transformers,
# accelerate and safetensors already there; no diffusers, pydantic or our packages), downloaded
# here into .gpu-wheels/ (ignored by git; carried to the GPU machine with the working tree).
# Then, there: scripts/gpu-suite.sh. The versions are those of this checkout's .venv, so the
# suite runs there with the library versions it was tested with here. Stays under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
OUT=${OUT:-.gpu-wheels}
PY_VERSION=${PY_VERSION:-3.12}
LIMIT_MIB=64

version() { "$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))"; }

rm -rf "$OUT"
mkdir -p "$OUT"
# Pure-Python or binary wheels for the GPU machine's Python, no dependency resolution: the list
# is what the suite imports beyond what the machine has (diffusers' and pydantic's own needs;
# diffusers checks for requests at import, which transformers 5 no longer brings). Checked by
# installing these wheels over torch, transformers, accelerate and safetensors alone in a Python
# 3.12 venv and running `scripts/gpu-suite.sh --smoke`.
requirements=()
for package in diffusers pydantic pydantic-core pydantic-settings annotated-types \
    typing-inspection typing-extensions importlib-metadata zipp pillow open-clip-torch \
    requests urllib3 charset-normalizer certifi idna \
    python-dotenv; do
    requirements+=("$package==$(version "$package")")
done
"$VENV/bin/python" -m pip download --quiet --dest "$OUT" --python-version "$PY_VERSION" \
    --only-binary :all: --no-deps --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any \
    "${requirements[@]}"
# Our own packages, as wheels (pure Python).
"$VENV/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$OUT" \
    ./shared ./services/renderer

total_kib=$(du -sk "$OUT" | cut -f1)
echo "$(ls "$OUT" | wc -l) wheels, $((total_kib / 1024)) MiB in $OUT"
if (( total_kib > LIMIT_MIB * 1024 )); then
    echo "over the ${LIMIT_MIB} MiB the GPU machine's transfer allows" >&2
    exit 1
fi
