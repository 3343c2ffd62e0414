#!/usr/bin/env bash
# Run the GPU suite on a GPU machine without network: install the wheels scripts/gpu-wheels.sh
# downloaded (.gpu-wheels/, carried with the working tree) into a virtual environment that sees
# the machine's own torch, transformers, accelerate and safetensors, then run the suite in one
# process (`python -m benchmarks.bench_gpu`, what `python -m benchmarks gpu` runs; extra
# arguments go to it, e.g. --budget-s 420). The suite rewrites the "GPU suite" section of
# docs/benchmarks.md; when $OUT is set (the GPU machine's output folder) the docs and the log
# are copied there too. SUITE_TIMEOUT_S (default 570) stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.gpu-wheels}
VENV=${GPU_VENV:-.gpu-venv}

if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "no wheels in $WHEELS: run scripts/gpu-wheels.sh on a machine with network first" >&2
    exit 1
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --quiet --no-index --no-deps "$WHEELS"/*.whl
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
log=$(mktemp)
# A hard stop below the machine's own limit, so that what the suite measured (it rewrites the
# docs section after each section) is still copied out when a section overruns its estimate.
set +e
HF_HUB_OFFLINE=1 timeout "${SUITE_TIMEOUT_S:-570}" "$VENV/bin/python" -m benchmarks.bench_gpu "$@" 2>&1 \
    | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [[ -n "${OUT:-}" ]]; then
    cp docs/benchmarks.md "$log" "$OUT"/
    mv "$OUT/$(basename "$log")" "$OUT/gpu-suite.log"
fi
exit "$status"
