from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from omost_renderer.pipelines.family_params import UnsupportedParamError
from omost_renderer.pipelines.flux.pipeline_flux import OmostFluxPipeline
from omost_renderer.pipelines.flux.tiny import build_tiny_flux
from omost_renderer.pipelines.regional_schedule import RegionalSchedule
from omost_renderer.pipelines.rendering import CanvasRenderer, RenderParams
from omost_schema import Canvas
from PIL import Image

SMALL = {"width": 64, "height": 64, "steps": 3}


@pytest.fixture(scope="module")
def tiny_flux() -> OmostFluxPipeline:
    return build_tiny_flux()


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def _latents(pipe: OmostFluxPipeline, canvas: Canvas, params: RenderParams) -> torch.Tensor:
    conditioning = pipe.condition(canvas, (params.height // 8, params.width // 8))
    generators = [torch.Generator().manual_seed(params.seed)]
    noise = pipe.noise(generators, params.height, params.width)
    sigmas = torch.linspace(1.0, 0.0, params.steps + 1)
    return pipe.denoise(noise, sigmas, conditioning, pipe._guidance(params, 1))


def test_a_global_only_canvas_renders_exactly_as_the_stock_processors(
    global_canvas: Canvas,
) -> None:
    ours, stock = build_tiny_flux(), build_tiny_flux(regional=False)
    params = RenderParams(**SMALL)
    assert torch.equal(
        _latents(ours, global_canvas, params), _latents(stock, global_canvas, params)
    )
    image = ours.render(global_canvas, params)[0].image
    assert np.array_equal(_pixels(image), _pixels(stock.render(global_canvas, params)[0].image))


def test_regions_change_the_render_and_regional_steps_0_turns_the_mask_off(
    dragon_canvas: Canvas,
) -> None:
    params = RenderParams(**SMALL)
    stock = build_tiny_flux(regional=False).render(dragon_canvas, params)[0].image
    regional = build_tiny_flux().render(dragon_canvas, params)[0].image
    off = build_tiny_flux(schedule=RegionalSchedule(regional_steps=0)).render(dragon_canvas, params)
    assert not np.array_equal(_pixels(regional), _pixels(stock))
    assert np.array_equal(_pixels(off[0].image), _pixels(stock))


def test_renders_a_png_through_the_canvas_renderer_seam(
    tiny_flux: OmostFluxPipeline, dragon_canvas: Canvas
) -> None:
    renderer: CanvasRenderer = tiny_flux
    images = renderer.render(
        dragon_canvas, RenderParams(width=128, height=64, steps=2, seed=5, num_images=2)
    )
    assert [im.image.size for im in images] == [(128, 64), (128, 64)]
    assert [im.seed for im in images] == [5, 6]
    assert images[0].metadata["family"] == "flux"
    assert images[0].metadata["sampler"] == "flow-match Euler"
    buffer = io.BytesIO()
    images[0].image.save(buffer, format="PNG")
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_a_seed_gives_the_same_image_and_a_batch_equals_single_renders(
    tiny_flux: OmostFluxPipeline, dragon_canvas: Canvas
) -> None:
    batch = tiny_flux.render(dragon_canvas, RenderParams(**SMALL, seed=3, num_images=2))
    again = tiny_flux.render(dragon_canvas, RenderParams(**SMALL, seed=4))[0]
    first = tiny_flux.render(dragon_canvas, RenderParams(**SMALL, seed=3))[0]
    assert np.abs(_pixels(batch[1].image) - _pixels(again.image)).max() <= 1
    assert np.abs(_pixels(batch[0].image) - _pixels(first.image)).max() <= 1
    assert not np.array_equal(_pixels(first.image), _pixels(again.image))


def test_progress_previews_and_cancel(tiny_flux: OmostFluxPipeline, dragon_canvas: Canvas) -> None:
    calls: list[tuple[int, int, tuple[int, int] | None]] = []
    tiny_flux.preview_every = 2
    tiny_flux.render(
        dragon_canvas, RenderParams(**SMALL), lambda s, t, p: calls.append((s, t, p and p.size))
    )
    tiny_flux.preview_every = 5
    # Previews at the latent's resolution: the packed latent unpacked and projected to RGB.
    assert calls == [(1, 3, None), (2, 3, (8, 8)), (3, 3, (8, 8))]

    class CancelledError(Exception):
        pass

    def cancel(step: int, total: int, preview: Image.Image | None) -> None:
        raise CancelledError

    with pytest.raises(CancelledError):
        tiny_flux.render(dragon_canvas, RenderParams(**SMALL), cancel)


def test_sketch_start_and_hires_fix(tiny_flux: OmostFluxPipeline, dragon_canvas: Canvas) -> None:
    calls: list[int] = []
    plain = tiny_flux.render(dragon_canvas, RenderParams(**SMALL))[0].image
    sketch = tiny_flux.render(dragon_canvas, RenderParams(**SMALL, sketch_strength=0.5))[0].image
    assert not np.array_equal(_pixels(plain), _pixels(sketch))
    hires = tiny_flux.render(
        dragon_canvas,
        RenderParams(**SMALL, hires_scale=2.0, hires_steps=2, hires_denoise=0.5),
        lambda s, t, p: calls.append(t),
    )[0]
    assert hires.image.size == (128, 128)
    assert calls == [5] * 5


def test_parameters_flux_lacks_are_refused_when_set(dragon_canvas: Canvas) -> None:
    schnell = build_tiny_flux(guidance=False)
    with pytest.raises(UnsupportedParamError) as error:
        schnell.render(dragon_canvas, RenderParams(**SMALL, cfg=3.0))
    assert error.value.param == "cfg"
    with pytest.raises(UnsupportedParamError) as error:
        schnell.render(dragon_canvas, RenderParams(**SMALL, negative_prompt="blurry"))
    assert error.value.param == "negative_prompt"
    assert schnell.render(dragon_canvas, RenderParams(**SMALL))[0].metadata["guidance"] is None


def test_cfg_is_flux_dev_guidance(tiny_flux: OmostFluxPipeline, dragon_canvas: Canvas) -> None:
    default = tiny_flux.render(dragon_canvas, RenderParams(**SMALL))[0]
    given = tiny_flux.render(dragon_canvas, RenderParams(**SMALL, cfg=7.0))[0]
    assert default.metadata["guidance"] == 3.5
    assert given.metadata["guidance"] == 7.0
    assert not np.array_equal(_pixels(default.image), _pixels(given.image))


def test_sizes_off_the_16_pixel_grid_are_refused(tiny_flux: OmostFluxPipeline) -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny_flux.check_inputs(RenderParams.model_construct(width=72, height=64))


def test_occlusion_mask_mode_reaches_the_joint_mask(
    tiny_flux: OmostFluxPipeline, global_canvas: Canvas
) -> None:
    from omost_schema import LocalDescription

    def local(area: str, distance: float) -> LocalDescription:
        return LocalDescription(
            location="in the center", offset="no offset", area=area,
            distance_to_viewer=distance, description="a thing", detailed_descriptions=[],
            tags="", atmosphere="", style="", quality_meta="", HTML_web_color_name="red",
        )  # fmt: skip

    canvas = global_canvas.model_copy(deep=True)
    far, near = local("a large square area", 5.0), local("a small square area", 1.0)
    canvas.local_descriptions = [far, near]
    omost = tiny_flux.condition(canvas, (32, 32))
    occluded = tiny_flux.condition(canvas, (32, 32), "occlusion")
    assert omost.prompt.masks[1].sum() > occluded.prompt.masks[1].sum()  # the far region shrank
    assert torch.equal(omost.prompt.masks[2], occluded.prompt.masks[2])  # the near one did not
    assert omost.mask is not None
    assert occluded.mask is not None
    assert not torch.equal(omost.mask, occluded.mask)


def test_region_edit_keeps_the_outside_with_the_flow_matching_blend(
    tiny_flux: OmostFluxPipeline, global_canvas: Canvas
) -> None:
    from omost_renderer.pipelines.render_start import RenderStart, RepaintArea
    from omost_schema import Rect
    from omost_schema.repaint import repaint_mask

    params = RenderParams(width=256, height=256, steps=3, seed=1)
    base = tiny_flux.render(global_canvas, params)[0]
    assert base.latents["base"].shape == (256, tiny_flux.transformer.config.in_channels)
    rects = (Rect(0, 30, 0, 30),)
    start = RenderStart(latents=base.latents, keep_seed=base.seed,
                        repaint=RepaintArea(rects=rects), kept_image=base.image)  # fmt: skip
    edit = tiny_flux.render(global_canvas, params.model_copy(update={"seed": 2}), start=start)[0]
    full = tiny_flux.render(global_canvas, params.model_copy(update={"seed": 2}))[0]
    outside = repaint_mask(list(rects), 256, 256, cell_px=1) == 0
    diff = np.abs(_pixels(edit.image) - _pixels(base.image))
    assert diff[outside].mean() <= 1.0
    assert diff[~outside].mean() > 5.0
    assert np.abs(_pixels(full.image) - _pixels(base.image))[outside].mean() > 10.0
