"""Recent compositions' batch inputs: reused, bounded, and dropped once a job of theirs ends."""

from __future__ import annotations

import gc

import pytest
from omost_renderer.pipelines.composition_cache import CompositionCache
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_schema import Canvas


class Part:
    """A job's per-pass inputs (weakly referenceable)."""


def test_a_composition_is_built_once_and_reused() -> None:
    cache: CompositionCache[Part, list[int]] = CompositionCache(kept=2)
    a, b = Part(), Part()
    built = cache.get([a, b], (1, 1), lambda: [1])
    assert cache.get([a, b], (1, 1), lambda: [2]) is built
    # Another order, or other counts, is another composition.
    assert cache.get([b, a], (1, 1), lambda: [3]) == [3]
    assert cache.get([a, b], (2, 1), lambda: [4]) == [4]
    # Bounded: the least recently used ([a, b], (1, 1)) left.
    assert len(cache) == 2
    assert cache.get([a, b], (1, 1), lambda: [5]) == [5]
    with pytest.raises(ValueError, match="at least 1"):
        CompositionCache(kept=0)


def test_a_composition_whose_job_ended_is_dropped() -> None:
    cache: CompositionCache[Part, str] = CompositionCache(kept=4)
    a, b = Part(), Part()
    cache.get([a, b], None, lambda: "ab")
    cache.get([a], None, lambda: "a")
    del b
    gc.collect()
    # The composition of the job still running is kept, not built again.
    assert cache.get([a], None, lambda: "never") == "a"
    assert len(cache) == 1


def test_a_finished_render_leaves_no_composition_behind(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    params = RenderParams(width=64, height=64, steps=2, seed=1, hires_scale=2.0, hires_steps=1)
    tiny_renderer.render(dragon_canvas, params)
    tiny_renderer.render(dragon_canvas, params.model_copy(update={"hires_scale": 1.0}))
    # The base and hires passes of the first render ended: only the last pass's entry is left.
    assert len(tiny_renderer.unet_steps.batches) == 1
