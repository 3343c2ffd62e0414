"""Every family's render runs in inference mode, alone and in a batch (no autograd graph kept)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from omost_renderer.pipelines.flux.tiny import build_tiny_flux
from omost_renderer.pipelines.flux2.tiny import build_tiny_flux2
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer
from omost_renderer.pipelines.step_batch import BatchingRenderer, StepBatch
from omost_schema import Canvas
from PIL import Image

FAMILIES: dict[str, Callable[[], BatchingRenderer]] = {
    "sdxl": build_tiny_renderer,
    "flux": build_tiny_flux,
    "flux2": build_tiny_flux2,
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_step_of_a_render_runs_in_inference_mode(family: str, global_canvas: Canvas) -> None:
    renderer = FAMILIES[family]()
    params = RenderParams(width=64, height=64, steps=2, seed=3)
    seen: list[bool] = []

    def on_step(step: int, total: int, preview: Image.Image | None) -> None:
        # Called from inside the render, between its model calls.
        seen.append(torch.is_inference_mode_enabled())

    batch = StepBatch(renderer, max_jobs=1)
    assert batch.add("job", renderer.render_steps(global_canvas, params, on_step)) is None
    while len(batch):
        assert [outcome.error for outcome in batch.step()] in ([], [None])
    assert seen == [True, True]
