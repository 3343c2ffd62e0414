"""Region edits and init images on the tiny pipeline: the outside is kept, the inside changes."""

from __future__ import annotations

import numpy as np
from omost_renderer.pipelines.render_start import RenderStart, RepaintArea
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_schema import Canvas
from omost_schema.diff import diff_canvases, repaint_rects
from omost_schema.repaint import repaint_mask
from PIL import Image

SIZE = 256


def _recoloured(canvas: Canvas) -> Canvas:
    edited = canvas.model_copy(deep=True)
    edited.local_descriptions[0].HTML_web_color_name = "blue"
    return edited


def _mean_abs(a: Image.Image, b: Image.Image, where: np.ndarray) -> float:
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return float(diff[where].mean())


def test_region_edit_with_a_new_seed_keeps_the_outside(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    params = RenderParams(width=SIZE, height=SIZE, steps=6, seed=5)
    base = tiny_renderer.render(dragon_canvas, params)[0]
    edited = _recoloured(dragon_canvas)
    rects = repaint_rects(diff_canvases(dragon_canvas, edited))
    assert rects
    start = RenderStart(latents=base.latents, keep_seed=base.seed,
                        repaint=RepaintArea(rects=tuple(rects)), kept_image=base.image)  # fmt: skip
    new_seed = params.model_copy(update={"seed": 99})
    edit = tiny_renderer.render(edited, new_seed, start=start)[0]
    full = tiny_renderer.render(edited, new_seed)[0]
    outside = repaint_mask(rects, SIZE, SIZE, cell_px=1) == 0
    assert outside.any()
    assert not outside.all()
    assert _mean_abs(edit.image, base.image, outside) <= 1.0
    assert _mean_abs(edit.image, base.image, ~outside) > 5.0
    # Without the blend the same seed redraws the outside too.
    assert _mean_abs(full.image, base.image, outside) > 10.0
    # The kept latents are exactly the base's outside the mask.
    cells = repaint_mask(rects, SIZE, SIZE) == 0
    assert np.array_equal(edit.latents["base"][:, cells], base.latents["base"][:, cells])


def test_an_edit_with_nothing_changed_returns_the_base(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    params = RenderParams(width=64, height=64, steps=4, seed=5)
    base = tiny_renderer.render(dragon_canvas, params)[0]
    start = RenderStart(latents=base.latents, keep_seed=base.seed, repaint=RepaintArea(),
                        kept_image=base.image)  # fmt: skip
    again = tiny_renderer.render(dragon_canvas, params.model_copy(update={"seed": 8}), start=start)
    assert np.array_equal(np.asarray(again[0].image), np.asarray(base.image))


def test_region_edit_of_a_hires_render_keeps_both_passes(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    params = RenderParams(width=128, height=128, steps=3, seed=5, hires_scale=2.0, hires_steps=3)
    base = tiny_renderer.render(dragon_canvas, params)[0]
    assert set(base.latents) == {"base", "hires"}
    edited = _recoloured(dragon_canvas)
    rects = repaint_rects(diff_canvases(dragon_canvas, edited))
    start = RenderStart(latents=base.latents, keep_seed=base.seed,
                        repaint=RepaintArea(rects=tuple(rects)), kept_image=base.image)  # fmt: skip
    edit = tiny_renderer.render(edited, params.model_copy(update={"seed": 9}), start=start)[0]
    assert edit.image.size == (256, 256)
    outside = repaint_mask(rects, 256, 256, cell_px=1) == 0
    assert _mean_abs(edit.image, base.image, outside) <= 1.0


def test_init_image_img2img_follows_the_image_by_strength(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    image = Image.fromarray(np.stack([ramp] * 3, axis=-1), mode="RGB")
    params = RenderParams(width=64, height=64, steps=4, seed=5)
    everywhere = np.ones((64, 64), dtype=bool)
    light = tiny_renderer.render(
        dragon_canvas, params, start=RenderStart(image=image, strength=0.2)
    )
    heavy = tiny_renderer.render(
        dragon_canvas, params, start=RenderStart(image=image, strength=1.0)
    )
    assert _mean_abs(light[0].image, image, everywhere) < _mean_abs(
        heavy[0].image, image, everywhere
    )


def test_init_image_with_a_mask_keeps_the_black_part(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    pixels = np.zeros((64, 64), dtype=np.float32)
    pixels[:, :32] = 1.0  # repaint the left half
    start = RenderStart(image=image, strength=0.9, keep_seed=5, repaint=RepaintArea(pixels=pixels))
    out = tiny_renderer.render(dragon_canvas, RenderParams(width=64, height=64, steps=4, seed=5),
                               start=start)[0]  # fmt: skip
    right = np.zeros((64, 64), dtype=bool)
    right[:, 40:] = True
    assert _mean_abs(out.image, image, right) <= 1.0
    assert _mean_abs(out.image, image, ~right) > 5.0


def test_occlusion_mask_mode_changes_the_regional_masks_of_the_render(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    overlapping = dragon_canvas.model_copy(deep=True)
    overlapping.local_descriptions[0].location = "in the center"
    overlapping.local_descriptions[1].location = "in the center"
    # Large enough that the attention layers' grids tell the occluded box from the full one.
    params = RenderParams(width=256, height=256, steps=2, seed=5)
    omost = tiny_renderer.render(overlapping, params)[0]
    again = tiny_renderer.render(overlapping, params.model_copy(update={"mask_mode": "omost"}))[0]
    occluded = tiny_renderer.render(
        overlapping, params.model_copy(update={"mask_mode": "occlusion"})
    )[0]
    # The tiny model barely reacts to its text, so compare the final latents, not pixels.
    assert np.array_equal(omost.latents["base"], again.latents["base"])
    assert not np.array_equal(omost.latents["base"], occluded.latents["base"])
    assert occluded.metadata["mask_mode"] == "occlusion"
