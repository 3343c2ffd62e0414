"""A stand-in BatchingRenderer: the fake's sketch render as a generator of model calls.

Its ``denoise_batch`` records which jobs (by canvas description) shared each model call, so the
worker's batching can be asserted from the record. A call that holds a ``poison`` canvas fails
(the driver then retries its renders one at a time); one that holds a ``bad-kernel`` canvas fails
as a poisoned CUDA context does. Worker subprocesses load it through
``OMOST_RENDERER_FACTORY=batching_renderer:build`` (``OMOST_TEST_STEP_SLEEP_S`` slows each call).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import torch
from fake_renderer import POISON, FakeRenderer
from faulty_renderer import ILLEGAL_ADDRESS
from omost_renderer.pipelines.render_start import RenderStart
from omost_renderer.pipelines.rendering import RenderedImage, RenderParams, StepCallback
from omost_renderer.pipelines.step_batch import DenoiseCall, RenderSteps
from omost_schema import Canvas, sketch_image
from PIL import Image

BAD_KERNEL = "bad-kernel"


class FakeTextCache:
    """The counters of a ``TextEncodingCache``, for a renderer that looks prompts up."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.hits = 0
        self.misses = 0

    def look_up(self, prompt: str) -> None:
        if prompt in self.seen:
            self.hits += 1
        else:
            self.seen.add(prompt)
            self.misses += 1

    @property
    def entries(self) -> int:
        return len(self.seen)

    @property
    def bytes(self) -> int:
        return 64 * len(self.seen)


class BatchingFakeRenderer(FakeRenderer):
    """Draws the sketch one model call per step; records the jobs each call carried."""

    def __init__(self, step_sleep_s: float = 0.0) -> None:
        super().__init__(step_sleep_s)
        self.lock = threading.Lock()
        #: Descriptions of the renders in each successful call, in call order.
        self.shared: list[list[str]] = []
        #: Descriptions of the renders in each call, failed ones too.
        self.attempted: list[list[str]] = []
        self.text_cache = FakeTextCache()

    def render_steps(
        self,
        canvas: Canvas,
        params: RenderParams,
        on_step: StepCallback | None = None,
        *,
        start: RenderStart | None = None,
    ) -> RenderSteps:
        self.calls += 1
        self.text_cache.look_up(canvas.global_description.description)
        return self._steps(canvas, params, on_step)

    def _steps(
        self, canvas: Canvas, params: RenderParams, on_step: StepCallback | None
    ) -> RenderSteps:
        image = Image.fromarray(sketch_image(canvas, params.width, params.height), mode="RGB")
        name = canvas.global_description.description
        for step in range(1, params.steps + 1):
            yield DenoiseCall(
                key=(params.width, params.height), rows=2 * params.num_images, payload=name
            )
            if on_step is not None:
                on_step(step, params.steps, image)
        return [RenderedImage(image=image, seed=params.seed + n) for n in range(params.num_images)]

    def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
        names = [str(call.payload) for call in calls]
        with self.lock:
            self.attempted.append(names)
        if any(BAD_KERNEL in name for name in names):
            raise RuntimeError(ILLEGAL_ADDRESS)
        if any(POISON in name for name in names):
            raise RuntimeError("this canvas always crashes the model call")
        if self.step_sleep_s:
            time.sleep(self.step_sleep_s)
        with self.lock:
            self.shared.append(names)
        return [torch.zeros(call.rows) for call in calls]

    def calls_with(self, name: str) -> list[int]:
        """Indexes of the successful calls that carried the render of ``name``."""
        with self.lock:
            return [n for n, names in enumerate(self.shared) if name in names]


def build() -> BatchingFakeRenderer:
    """Factory used by worker subprocesses."""
    return BatchingFakeRenderer(float(os.environ.get("OMOST_TEST_STEP_SLEEP_S", "0")))
