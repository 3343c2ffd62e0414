"""Run every benchmark, one after another, each in its own process: ``python -m benchmarks``.

Each prints its ratios (ours against a baseline measured side by side in the same run); the
figures in docs/benchmarks.md come from these runs. Name some to run only those:
``python -m benchmarks schema queue``; options after the names go to each of them:
``python -m benchmarks gpu --smoke``. ``gpu`` is the GPU suite (``bench_gpu``): it skips itself
without CUDA.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Run the named benchmarks (default: every ``bench_*`` module); return 1 on a failure.

    Args:
        argv: Benchmark names (``schema``, ``gpu``...), then options passed to each.
    """
    folder = Path(__file__).parent
    available = sorted(
        info.name.removeprefix("bench_")
        for info in pkgutil.iter_modules([str(folder)])
        if info.name.startswith("bench_")
    )
    # Names until the first option; everything from there on (values included) is options.
    first_option = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    names, options = argv[:first_option], argv[first_option:]
    chosen = names or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"\n=== benchmarks.bench_{name} ===", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", f"benchmarks.bench_{name}", *options], check=False
        )
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
