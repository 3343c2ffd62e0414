"""The largest request the limits accept renders; the sampler refuses a schedule past its cap."""

from __future__ import annotations

import pytest
from omost_renderer.pipelines.rendering import MAX_IMAGES, MAX_REQUEST_PIXELS, RenderParams
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_renderer.pipelines.sdxl.sampling import MAX_SCHEDULE, omost_sigmas
from omost_schema import Canvas


@pytest.mark.slow
def test_the_largest_accepted_request_renders(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    # The whole pixel budget, as the most images the limits allow. (One 2048x2048 image holds
    # as many pixels; on the CPU its attention takes minutes, so the batch stands for both.)
    params = RenderParams(width=1024, height=1024, num_images=MAX_IMAGES, steps=1, seed=3)
    assert params.request_pixels() == MAX_REQUEST_PIXELS
    images = tiny_renderer.render(dragon_canvas, params)
    assert [im.image.size for im in images] == [(1024, 1024)] * MAX_IMAGES
    assert [im.seed for im in images] == [3, 4, 5, 6]


def test_the_smallest_strength_at_the_most_steps_fits_the_schedule_cap() -> None:
    params = RenderParams(steps=100, sketch_strength=0.1)
    assert params.sketch_strength is not None
    assert omost_sigmas(params.steps, params.sketch_strength).shape == (101,)


def test_the_sampler_refuses_a_schedule_longer_than_its_cap() -> None:
    # Unbounded, strength 1e-12 asked for 1e13 sigmas and killed the worker.
    with pytest.raises(ValueError, match=str(MAX_SCHEDULE)):
        omost_sigmas(100, 0.01)
    with pytest.raises(ValueError, match="noise levels"):
        omost_sigmas(25, 1e-12)
