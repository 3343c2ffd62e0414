"""On CUDA, batched steps make no host sync: ``torch.cuda.set_sync_debug_mode("error")`` holds.

The per-job preparation (text, noise, the schedule's device copy) and the decode may sync; the
steps between the first model call and the last may not. Previews sync by design (a picture is
read back every ``preview_every`` steps), so these renders have no step callback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from omost_renderer.pipelines.loading import load_renderer
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.step_batch import BatchingRenderer, RenderSteps
from omost_schema import Canvas

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@contextmanager
def syncs_fail() -> Iterator[None]:
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _canvases(dragon: Canvas) -> list[Canvas]:
    smaller = dragon.model_copy(deep=True)
    smaller.local_descriptions = smaller.local_descriptions[:1]
    return [dragon, smaller]


def _steps_without_sync(renderer: BatchingRenderer, renders: list[RenderSteps], steps: int) -> None:
    calls = [next(render) for render in renders]
    for index in range(steps):
        with syncs_fail():
            results = renderer.denoise_batch(calls)
            if index < steps - 1:
                calls = [r.send(x) for r, x in zip(renders, results, strict=True)]
    for render, result in zip(renders, results, strict=True):
        with pytest.raises(StopIteration):
            render.send(result)


@pytest.mark.parametrize("model", ["tiny", "tiny-flux"])
def test_batched_steps_make_no_host_sync(model: str, dragon_canvas: Canvas) -> None:
    renderer = load_renderer(model, "cuda")
    assert isinstance(renderer, BatchingRenderer)
    params = RenderParams(width=64, height=64, steps=3, seed=1)
    renders = [renderer.render_steps(c, params) for c in _canvases(dragon_canvas)]
    _steps_without_sync(renderer, renders, params.steps)
