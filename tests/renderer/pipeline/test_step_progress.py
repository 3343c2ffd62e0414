"""Per-step progress of a pass on the render's step count, with previews every n steps."""

from __future__ import annotations

import torch
from omost_renderer.pipelines.step_progress import StepProgress
from PIL import Image


def test_steps_count_on_the_render_and_previews_come_every_n_and_at_the_last() -> None:
    seen: list[tuple[int, int, tuple[int, int] | None]] = []
    shown: list[torch.Tensor] = []

    def preview(tokens: torch.Tensor) -> Image.Image:
        shown.append(tokens)
        return Image.new("RGB", (4, 2))

    progress = StepProgress(
        lambda s, t, p: seen.append((s, t, p and p.size)), offset=3, total=7, preview_every=2,
        preview=preview,
    )  # fmt: skip
    x0 = torch.arange(12.0).reshape(2, 3, 2)
    for index in range(4):
        progress(index, torch.zeros(2, 3, 2), x0)
    assert seen == [(4, 7, (4, 2)), (5, 7, None), (6, 7, (4, 2)), (7, 7, (4, 2))]
    # The first image's x0 estimate is what the preview shows.
    assert all(torch.equal(t, x0[0]) for t in shown)


def test_without_a_callback_nothing_is_previewed() -> None:
    def preview(tokens: torch.Tensor) -> Image.Image:
        raise AssertionError("no preview without a callback")

    StepProgress(None, 0, 1, 1, preview)(0, torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
