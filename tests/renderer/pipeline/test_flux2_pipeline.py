"""The regional FLUX.2 klein pipeline end to end on tiny random components (CPU, 64..128 px)."""

from __future__ import annotations

import io
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from omost_renderer.pipelines.family_params import UnsupportedParamError
from omost_renderer.pipelines.flux2.latents import noise_tokens
from omost_renderer.pipelines.flux2.pipeline_flux2 import OmostFlux2Pipeline
from omost_renderer.pipelines.flux2.sampling import FLUX2_SCHEDULER
from omost_renderer.pipelines.flux2.tiny import build_tiny_flux2
from omost_renderer.pipelines.packed_latents import token_grid
from omost_renderer.pipelines.regional_schedule import RegionalSchedule
from omost_renderer.pipelines.rendering import CanvasRenderer, RenderParams
from omost_renderer.pipelines.step_batch import StepBatch
from omost_schema import Canvas
from PIL import Image

#: diffusers' own classes, untyped (the stock pipeline as a reference).
DIFFUSERS: Any = diffusers

SMALL = {"width": 64, "height": 64, "steps": 3}


@pytest.fixture(scope="module")
def tiny_flux2() -> OmostFlux2Pipeline:
    return build_tiny_flux2()


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def _tokens(pipe: OmostFlux2Pipeline, canvas: Canvas, params: RenderParams) -> torch.Tensor:
    return torch.from_numpy(pipe.render(canvas, params)[0].latents["base"])


def test_a_global_only_canvas_renders_exactly_as_the_stock_processors(
    global_canvas: Canvas,
) -> None:
    ours, stock = build_tiny_flux2(), build_tiny_flux2(regional=False)
    params = RenderParams(**SMALL)
    assert torch.equal(_tokens(ours, global_canvas, params), _tokens(stock, global_canvas, params))
    image = ours.render(global_canvas, params)[0].image
    assert np.array_equal(_pixels(image), _pixels(stock.render(global_canvas, params)[0].image))


def test_a_global_only_canvas_matches_diffusers_flux2_klein_pipeline(
    global_canvas: Canvas,
) -> None:
    """Same text states and noise: diffusers' own klein pipeline ends at the same latents."""
    ours = build_tiny_flux2(regional=False)
    params = RenderParams(**SMALL, seed=7)
    tokens = _tokens(ours, global_canvas, params)
    rows, cols = token_grid(64, 64, ours.vae_scale_factor)
    features = ours.transformer.config.in_channels
    noise = torch.randn((1, features, rows, cols), generator=torch.Generator().manual_seed(7))
    assert torch.equal(
        noise.flatten(2).transpose(1, 2),
        noise_tokens([torch.Generator().manual_seed(7)], features, rows, cols),
    )
    conditioning = ours.condition(global_canvas, params, rows, cols)
    stock = DIFFUSERS.Flux2KleinPipeline(
        scheduler=DIFFUSERS.FlowMatchEulerDiscreteScheduler.from_config(FLUX2_SCHEDULER),
        vae=ours.vae,
        text_encoder=ours.encoder.text_encoder,
        tokenizer=ours.encoder.tokenizer,
        transformer=ours.transformer,
        is_distilled=True,
    )
    stock.set_progress_bar_config(disable=True)
    expected = stock(
        prompt_embeds=conditioning.prompt.embeds,
        latents=noise,
        height=64,
        width=64,
        num_inference_steps=3,
        output_type="latent",
    ).images
    ours_latents = ours.stats.to_latents(tokens[None], 2 * rows, 2 * cols)
    torch.testing.assert_close(ours_latents, expected, atol=1e-4, rtol=1e-4)


def test_regions_change_the_render_and_regional_steps_0_turns_the_mask_off(
    dragon_canvas: Canvas,
) -> None:
    params = RenderParams(**SMALL)
    stock = build_tiny_flux2(regional=False).render(dragon_canvas, params)[0].image
    regional = build_tiny_flux2().render(dragon_canvas, params)[0].image
    off = build_tiny_flux2(schedule=RegionalSchedule(regional_steps=0))
    assert not np.array_equal(_pixels(regional), _pixels(stock))
    assert np.array_equal(_pixels(off.render(dragon_canvas, params)[0].image), _pixels(stock))


def test_each_region_text_counts_its_positions_from_zero(
    tiny_flux2: OmostFlux2Pipeline, dragon_canvas: Canvas
) -> None:
    params = RenderParams(**SMALL)
    prompt = tiny_flux2.condition(dragon_canvas, params, 4, 4).prompt
    lengths = prompt.region_lengths
    assert len(lengths) == 1 + len(dragon_canvas.local_descriptions)
    assert prompt.embeds.shape[:2] == (1, sum(lengths))
    starts = np.cumsum((0, *lengths[:-1]))
    assert prompt.text_ids[starts, 3].tolist() == [0.0] * len(lengths)
    assert prompt.text_ids[sum(lengths) - 1, 3] == lengths[-1] - 1
    bounded = build_tiny_flux2(max_region_tokens=20).condition(dragon_canvas, params, 4, 4)
    assert max(bounded.prompt.region_lengths) == 20


def test_renders_a_png_through_the_canvas_renderer_seam(
    tiny_flux2: OmostFlux2Pipeline, dragon_canvas: Canvas
) -> None:
    renderer: CanvasRenderer = tiny_flux2
    images = renderer.render(
        dragon_canvas, RenderParams(width=128, height=64, steps=2, seed=5, num_images=2)
    )
    assert [im.image.size for im in images] == [(128, 64), (128, 64)]
    assert [im.seed for im in images] == [5, 6]
    assert images[0].metadata["family"] == "flux2"
    assert images[0].metadata["cfg"] is None
    buffer = io.BytesIO()
    images[0].image.save(buffer, format="PNG")
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_a_seed_gives_the_same_image_and_a_batch_equals_single_renders(
    tiny_flux2: OmostFlux2Pipeline, dragon_canvas: Canvas
) -> None:
    batch = tiny_flux2.render(dragon_canvas, RenderParams(**SMALL, seed=3, num_images=2))
    again = tiny_flux2.render(dragon_canvas, RenderParams(**SMALL, seed=4))[0]
    first = tiny_flux2.render(dragon_canvas, RenderParams(**SMALL, seed=3))[0]
    assert np.abs(_pixels(batch[1].image) - _pixels(again.image)).max() <= 1
    assert np.abs(_pixels(batch[0].image) - _pixels(first.image)).max() <= 1
    assert not np.array_equal(_pixels(first.image), _pixels(again.image))


def test_two_jobs_share_model_calls_and_render_as_alone(
    tiny_flux2: OmostFlux2Pipeline, dragon_canvas: Canvas
) -> None:
    # The same texts (the same token counts) with the castle moved: each job keeps its own mask.
    moved = dragon_canvas.model_copy(deep=True)
    moved.local_descriptions[0].location = "on the left"
    assert moved.process().conditions[1].mask.tolist() != (
        dragon_canvas.process().conditions[1].mask.tolist()
    )
    jobs = [(dragon_canvas, RenderParams(**SMALL, seed=1)), (moved, RenderParams(**SMALL, seed=2))]
    batch = StepBatch(tiny_flux2, max_jobs=2)
    for index, (canvas, p) in enumerate(jobs):
        assert batch.add(f"job-{index}", tiny_flux2.render_steps(canvas, p)) is None
    outcomes = []
    while len(batch):
        outcomes += batch.step()
    assert batch.calls_made == 3
    assert batch.renders_stepped == 6
    for outcome, (canvas, p) in zip(sorted(outcomes, key=lambda o: o.job_id), jobs, strict=True):
        assert outcome.images is not None
        alone = tiny_flux2.render(canvas, p)[0]
        torch.testing.assert_close(
            torch.from_numpy(outcome.images[0].latents["base"]),
            torch.from_numpy(alone.latents["base"]),
            atol=1e-5,
            rtol=1e-5,
        )


def test_progress_previews_and_cancel(
    tiny_flux2: OmostFlux2Pipeline, dragon_canvas: Canvas
) -> None:
    calls: list[tuple[int, int, tuple[int, int] | None]] = []
    pipe = build_tiny_flux2(preview_every=2)
    pipe.render(
        dragon_canvas, RenderParams(**SMALL), lambda s, t, p: calls.append((s, t, p and p.size))
    )
    # Previews at the latent's resolution: the tokens de-normalised, unpacked, shown as RGB.
    assert calls == [(1, 3, None), (2, 3, (8, 8)), (3, 3, (8, 8))]

    class CancelledError(Exception):
        pass

    def cancel(step: int, total: int, preview: Image.Image | None) -> None:
        raise CancelledError

    with pytest.raises(CancelledError):
        tiny_flux2.render(dragon_canvas, RenderParams(**SMALL), cancel)


def test_sketch_start_and_hires_fix(tiny_flux2: OmostFlux2Pipeline, dragon_canvas: Canvas) -> None:
    totals: list[int] = []
    plain = tiny_flux2.render(dragon_canvas, RenderParams(**SMALL))[0].image
    sketch = tiny_flux2.render(dragon_canvas, RenderParams(**SMALL, sketch_strength=0.5))[0]
    assert not np.array_equal(_pixels(plain), _pixels(sketch.image))
    hires = tiny_flux2.render(
        dragon_canvas,
        RenderParams(**SMALL, hires_scale=2.0, hires_steps=2, hires_denoise=0.5),
        lambda s, t, p: totals.append(t),
    )[0]
    assert hires.image.size == (128, 128)
    assert totals == [5] * 5
    assert set(hires.latents) == {"base", "hires"}


def test_distilled_klein_refuses_guidance_and_a_negative_prompt(dragon_canvas: Canvas) -> None:
    klein = build_tiny_flux2()
    assert klein.family_params.capabilities() == {
        "cfg": None,
        "negative_prompt": False,
        "hires": True,
    }
    for name, value in (("cfg", 3.0), ("negative_prompt", "blurry")):
        with pytest.raises(UnsupportedParamError) as error:
            klein.render(dragon_canvas, RenderParams(**SMALL, **{name: value}))
        assert error.value.param == name


def test_klein_base_takes_guidance_and_a_negative_prompt(dragon_canvas: Canvas) -> None:
    base = build_tiny_flux2(distilled=False)
    assert base.family_params.capabilities()["cfg"] == "cfg"
    default = base.render(dragon_canvas, RenderParams(**SMALL))[0]
    assert (default.metadata["cfg"], default.metadata["negative_prompt"]) == (4.0, "")
    negative = base.render(dragon_canvas, RenderParams(**SMALL, negative_prompt="blurry"))[0]
    assert negative.metadata["negative_prompt"] == "blurry"
    assert not np.array_equal(_pixels(default.image), _pixels(negative.image))
    unguided = base.render(dragon_canvas, RenderParams(**SMALL, cfg=1.0))[0]
    assert unguided.metadata["cfg"] is None
    distilled = build_tiny_flux2().render(dragon_canvas, RenderParams(**SMALL))[0]
    assert np.array_equal(_pixels(unguided.image), _pixels(distilled.image))


def test_sizes_off_the_16_pixel_grid_are_refused(tiny_flux2: OmostFlux2Pipeline) -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny_flux2.check_inputs(RenderParams.model_construct(width=72, height=64))


def test_region_edit_keeps_the_outside_with_the_flow_matching_blend(
    tiny_flux2: OmostFlux2Pipeline, global_canvas: Canvas
) -> None:
    from omost_renderer.pipelines.render_start import RenderStart, RepaintArea
    from omost_schema import Rect
    from omost_schema.repaint import repaint_mask

    params = RenderParams(width=128, height=128, steps=3, seed=1)
    base = tiny_flux2.render(global_canvas, params)[0]
    assert base.latents["base"].shape == (64, tiny_flux2.transformer.config.in_channels)
    rects = (Rect(0, 30, 0, 30),)
    start = RenderStart(latents=base.latents, keep_seed=base.seed,
                        repaint=RepaintArea(rects=rects), kept_image=base.image)  # fmt: skip
    edit = tiny_flux2.render(global_canvas, params.model_copy(update={"seed": 2}), start=start)[0]
    outside = repaint_mask(list(rects), 128, 128, cell_px=1) == 0
    diff = np.abs(_pixels(edit.image) - _pixels(base.image))
    assert diff[outside].max() == 0
    assert diff[~outside].mean() > 1.0
    # A token (2x2 latent cells) none of whose cells repaints keeps the base's values exactly.
    cells = RepaintArea(rects=rects).latent_mask(128, 128, 8)
    kept = torch.from_numpy(cells.reshape(8, 2, 8, 2).max(axis=(1, 3)).reshape(-1) == 0)
    assert 0 < int(kept.sum()) < 64
    assert torch.equal(
        torch.from_numpy(edit.latents["base"])[kept], torch.from_numpy(base.latents["base"])[kept]
    )


def test_region_texts_are_encoded_once_and_served_from_the_cache(dragon_canvas: Canvas) -> None:
    pipe = build_tiny_flux2()
    regions = 1 + len(dragon_canvas.local_descriptions)
    first = pipe.render(dragon_canvas, RenderParams(**SMALL))[0]
    assert (pipe.text_cache.hits, pipe.text_cache.misses) == (0, regions)
    again = pipe.render(dragon_canvas, RenderParams(**SMALL))[0]
    assert (pipe.text_cache.hits, pipe.text_cache.misses) == (regions, regions)
    assert np.array_equal(_pixels(first.image), _pixels(again.image))
    uncached = build_tiny_flux2(text_cache_bytes=0)
    uncached.render(dragon_canvas, RenderParams(**SMALL))
    assert uncached.text_cache.entries == 0
