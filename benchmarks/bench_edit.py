"""Region edits on the tiny SDXL pipeline: what stays, what changes, and what an edit costs.

A base render of a two-region canvas, then the same canvas with one region recoloured, rendered
three ways with a new seed: as a region edit (latents kept outside the repaint area), as a full
render, and as a region edit without the final paste of the kept pixels (to show what the
latent blend alone keeps). Mean absolute pixel difference to the base (levels of 255) outside
the repaint area (dilated and feathered) and inside it, and the time of each render (median of
repeats, one CPU thread).

Usage: python -m benchmarks.bench_edit [--size 256] [--steps 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np
import torch
from omost_renderer.pipelines.render_start import RenderStart, RepaintArea
from omost_renderer.pipelines.rendering import RenderedImage, RenderParams
from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer
from omost_schema import Canvas, GlobalDescription, LocalDescription
from omost_schema.diff import diff_canvases, repaint_rects
from omost_schema.repaint import repaint_mask


def _canvas(color: str) -> Canvas:
    def local(location: str, colour: str, description: str) -> LocalDescription:
        return LocalDescription(
            location=location, offset="no offset", area="a small square area",
            distance_to_viewer=2.0, description=description, detailed_descriptions=[],
            tags=description, atmosphere="", style="", quality_meta="",
            HTML_web_color_name=colour,
        )  # fmt: skip

    glob = GlobalDescription(description="a dragon and a castle", detailed_descriptions=[],
                             tags="fantasy", HTML_web_color_name="darkslateblue")  # fmt: skip
    return Canvas(global_description=glob, local_descriptions=[
        local("on the right", color, "a dragon"), local("on the left", "gray", "a castle"),
    ])  # fmt: skip


def _timed(render: object, repeats: int) -> tuple[RenderedImage, float]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = render()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    assert result is not None
    return result[0], statistics.median(times)


def _diff(a: RenderedImage, b: RenderedImage, where: np.ndarray) -> float:
    pa, pb = (np.asarray(x.image, dtype=np.float64) for x in (a, b))
    return float(np.abs(pa - pb)[where].mean())


def main() -> None:
    """Print the figures as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    renderer = build_tiny_renderer()
    params = RenderParams(width=args.size, height=args.size, steps=args.steps, seed=1)
    before, after = _canvas("red"), _canvas("blue")
    base = renderer.render(before, params)[0]
    rects = repaint_rects(diff_canvases(before, after))
    start = RenderStart(latents=base.latents, keep_seed=base.seed,
                        repaint=RepaintArea(rects=tuple(rects)), kept_image=base.image)  # fmt: skip
    unpasted = dataclasses.replace(start, kept_image=None)
    new_seed = params.model_copy(update={"seed": 2})
    outside = repaint_mask(rects, args.size, args.size, cell_px=1) == 0
    rows = [
        ("region edit", lambda: renderer.render(after, new_seed, start=start)),
        ("region edit, no paste", lambda: renderer.render(after, new_seed, start=unpasted)),
        ("full render, new seed", lambda: renderer.render(after, new_seed)),
        ("full render, base seed", lambda: renderer.render(after, params)),
    ]
    print(f"{args.size}x{args.size}, {args.steps} steps, outside share {outside.mean():.2f}")
    print("| render | outside (levels) | inside (levels) | time (s) |")
    print("|---|---|---|---|")
    for name, render in rows:
        image, seconds = _timed(render, args.repeats)
        print(f"| {name} | {_diff(image, base, outside):.2f} | {_diff(image, base, ~outside):.2f}"
              f" | {seconds:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
