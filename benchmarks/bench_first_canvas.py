"""The README's first example end to end on the CPU default, as a new user runs it.

``make run`` on a machine without a GPU serves SmolLM2-135M (the bundled GGUF) in ``json`` mode
under its compact canvas budget. This starts the same LLM service (``transformers`` backend,
``OMOST_LLM_THREADS`` torch threads) and runs the README's example: the ``openai`` SDK,
"the fierce battle of warriors and the dragon", no ``max_tokens``, ``stream=True``, printing
deltas as they come. For several seeds it prints the seconds until the first region's code is on
screen (the global description) and until the whole canvas, the tokens written, and the canvas's
size.

Run: ``python -m benchmarks.bench_first_canvas [--seeds N] [--threads N] [--budget B]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import openai
from omost_llm.config import OutputMode, Settings
from omost_llm.main import create_app
from omost_schema import Canvas

from benchmarks.bench_llm import _serving

PROMPT = "the fierce battle of warriors and the dragon"


def run_example(url: str, seed: int, *, show: bool) -> dict[str, float]:
    """The README example with ``seed``; return its timings and sizes."""
    llm = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=900)
    start = time.perf_counter()
    first: float | None = None
    content = ""
    tokens = 0
    stream = llm.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": PROMPT}],
        seed=seed,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            text = choice.delta.content or ""
            content += text
            if first is None and "canvas.set_global_description(" in content:
                first = time.perf_counter() - start
            if show:
                print(text, end="", flush=True, file=sys.stderr)
    total = time.perf_counter() - start
    canvas = Canvas.from_code(content, strict=True)
    return {
        "first_code_s": first if first is not None else total,
        "total_s": total,
        "tokens": float(tokens),
        "locals": float(len(canvas.local_descriptions)),
    }


def main() -> None:
    """Measure the README example on the CPU default for several seeds."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", default="auto", help="OMOST_LLM_CANVAS_BUDGET")
    parser.add_argument("--show", action="store_true", help="print the streamed answer")
    args = parser.parse_args()
    settings = Settings(
        backend="transformers",
        model="smollm2",
        output=OutputMode.JSON,
        threads=args.threads,
        canvas_budget=args.budget,
    )
    started = time.perf_counter()
    with _serving(create_app(settings)) as url:
        print(f"service ready in {time.perf_counter() - started:.1f} s ({args.threads} thread(s))")
        rows = []
        for seed in range(args.seeds):
            row = run_example(url, seed, show=args.show)
            rows.append(row)
            print(
                f"seed {seed}: first region {row['first_code_s']:.1f} s,"
                f" canvas {row['total_s']:.1f} s, {row['tokens']:.0f} tokens"
                f" ({row['tokens'] / row['total_s']:.1f}/s),"
                f" {row['locals']:.0f} locals",
                flush=True,
            )
    totals = [r["total_s"] for r in rows]
    print(
        f"canvas seconds: median {statistics.median(totals):.1f}, max {max(totals):.1f};"
        f" first region median {statistics.median(r['first_code_s'] for r in rows):.1f} s"
    )


if __name__ == "__main__":
    main()
