"""Throughput of the schema package: parsing Omost code and ``process()``, against baselines.

Baselines on the same canvases: ``ast.parse`` alone of the same code (the floor any safe parser
built on Python's own parser pays) and ``json.loads`` of the same canvas as JSON (what a JSON
answer costs to read, before any validation).

Run: ``python -m benchmarks.bench_schema [--seconds 0.5] [--random 50]``.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omost_schema import AREAS, COLOR_NAMES, LOCATIONS, OFFSETS, Canvas

_ROOT = Path(__file__).resolve().parent.parent
_DRAGON = _ROOT / "tests" / "schema" / "data" / "dragon_answer.txt"
_WORDS = [
    "the",
    "a",
    "warrior",
    "dragon",
    "sky",
    "stormy",
    "bright",
    "light",
    "'quoted'",
    '"double"',
    "ancient",
    "city",
    "river",
]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def random_canvas(rng: random.Random, locals_count: int) -> Canvas:
    """A canvas shaped like a real Omost answer: long sub-prompts, several locals."""

    def details() -> list[str]:
        return [_sentence(rng, 18) for _ in range(rng.randint(4, 8))]

    return Canvas.model_validate(
        {
            "global_description": {
                "description": _sentence(rng, 8),
                "detailed_descriptions": details(),
                "tags": ", ".join(rng.choices(_WORDS, k=25)),
                "HTML_web_color_name": rng.choice(COLOR_NAMES),
            },
            "local_descriptions": [
                {
                    "location": rng.choice(LOCATIONS),
                    "offset": rng.choice(OFFSETS),
                    "area": rng.choice(AREAS),
                    "distance_to_viewer": round(rng.uniform(0.5, 10.0), 1),
                    "description": _sentence(rng, 6),
                    "detailed_descriptions": details(),
                    "tags": ", ".join(rng.choices(_WORDS, k=18)),
                    "atmosphere": _sentence(rng, 8),
                    "style": _sentence(rng, 8),
                    "quality_meta": _sentence(rng, 8),
                    "HTML_web_color_name": rng.choice(COLOR_NAMES),
                }
                for _ in range(locals_count)
            ],
        }
    )


def rate(work: Callable[[Any], object], inputs: Sequence[Any], seconds: float) -> float:
    """Items per second of ``work`` over ``inputs``, repeated for at least ``seconds``."""
    done = 0
    start = time.perf_counter()
    while True:
        for item in inputs:
            work(item)
        done += len(inputs)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def _row(name: str, per_second: float, baseline: float | None) -> str:
    ratio = f"{baseline / per_second:8.1f}x" if baseline else "        -"
    return f"  {name:<38}{per_second:>12,.0f}/s{ratio}"


def run(seconds: float, random_count: int) -> list[str]:
    """Measure and return the report lines."""
    rng = random.Random(12345)
    dragon_code = _DRAGON.read_text(encoding="utf-8")
    canvases = [random_canvas(rng, rng.randint(2, 6)) for _ in range(random_count)]
    sets = {
        "dragon transcript": ([dragon_code], [Canvas.from_code(dragon_code)]),
        f"{random_count} printed random canvases": ([c.to_code() for c in canvases], canvases),
    }
    lines = [f"{'canvases':>54}  cost vs baseline"]
    for name, (codes, parsed) in sets.items():
        jsons = [c.model_dump_json() for c in parsed]
        floor = rate(ast.parse, codes, seconds)
        json_rate = rate(json.loads, jsons, seconds)
        lenient = rate(Canvas.from_code, codes, seconds)
        strict = rate(lambda code: Canvas.from_code(code, strict=True), codes, seconds)
        validate_json = rate(Canvas.model_validate_json, jsons, seconds)
        chars = sum(map(len, codes)) / len(codes)
        lines.append(f"{name} (mean {chars:,.0f} characters of code)")
        lines.append(_row("ast.parse (floor)", floor, None))
        lines.append(_row("json.loads of the canvas JSON", json_rate, None))
        lines.append(_row("Canvas.from_code (lenient)", lenient, floor))
        lines.append(_row("Canvas.from_code(strict=True)", strict, floor))
        lines.append(_row("Canvas.model_validate_json", validate_json, json_rate))
        process_rate = rate(Canvas.process, parsed, seconds)
        lines.append(_row("Canvas.process()", process_rate, None))
        lines.append(
            f"  from_code / json.loads cost ratio: {json_rate / lenient:.1f}x;"
            f" from_code / ast.parse: {floor / lenient:.1f}x"
        )
    return lines


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--random", type=int, default=50, help="random canvases to print")
    args = parser.parse_args()
    for line in run(args.seconds, args.random):
        print(line)


if __name__ == "__main__":
    main()
