"""A stand-in CanvasRenderer for the service tests: draws the colour sketch, step by step.

Worker subprocesses load it through ``OMOST_RENDERER_FACTORY=fake_renderer:build`` with this folder
on ``PYTHONPATH``; ``OMOST_TEST_STEP_SLEEP_S`` slows every step down.
"""

from __future__ import annotations

import os
import time

from omost_renderer.pipelines.rendering import RenderedImage, RenderParams, StepCallback
from omost_schema import Canvas, sketch_image
from PIL import Image

POISON = "poison"


class FakeRenderer:
    """Draws the sketch; fails on canvases whose description contains ``poison``."""

    def __init__(self, step_sleep_s: float = 0.0) -> None:
        self.step_sleep_s = step_sleep_s
        self.calls = 0

    def render(
        self, canvas: Canvas, params: RenderParams, on_step: StepCallback | None = None
    ) -> list[RenderedImage]:
        self.calls += 1
        if POISON in canvas.global_description.description:
            raise RuntimeError("this canvas always crashes the pipeline")
        image = Image.fromarray(sketch_image(canvas, params.width, params.height), mode="RGB")
        for step in range(1, params.steps + 1):
            if self.step_sleep_s:
                time.sleep(self.step_sleep_s)
            if on_step is not None:
                on_step(step, params.steps, image)
        return [RenderedImage(image=image, seed=params.seed + n) for n in range(params.num_images)]


def build() -> FakeRenderer:
    """Factory used by worker subprocesses."""
    return FakeRenderer(float(os.environ.get("OMOST_TEST_STEP_SLEEP_S", "0")))


def canvas_json(description: str = "a cat on a sofa") -> dict[str, object]:
    """A small valid canvas as JSON."""
    return {
        "global_description": {
            "description": description,
            "detailed_descriptions": ["a quiet living room"],
            "tags": "cat, sofa",
            "HTML_web_color_name": "lightgray",
        },
        "local_descriptions": [
            {
                "location": "in the center",
                "offset": "no offset",
                "area": "a medium-sized square area",
                "distance_to_viewer": 2.0,
                "description": "a cat",
                "detailed_descriptions": ["a ginger cat"],
                "tags": "cat",
                "atmosphere": "calm",
                "style": "photo",
                "quality_meta": "high quality",
                "HTML_web_color_name": "orange",
            }
        ],
    }
