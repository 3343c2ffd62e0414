from __future__ import annotations

from collections.abc import Generator

import numpy as np
import pytest
import torch
from omost_renderer.pipelines.preview import latent_preview
from omost_renderer.pipelines.render_plan import hires_pass_size
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.sdxl import unet_steps
from omost_renderer.pipelines.sdxl.attention_processor import RegionalAttnProcessor
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_renderer.pipelines.sdxl.sampling import (
    SamplerCallback,
    SamplerSteps,
    Schedule,
    dpmpp_2m_steps,
    omost_sigmas,
)
from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer
from omost_renderer.pipelines.sketch_start import sketch_start_pixels
from omost_renderer.pipelines.step_batch import DenoiseCall
from omost_renderer.pipelines.vae_codec import pixels_to_uint8
from omost_schema import Canvas
from PIL import Image

SMALL = {"width": 64, "height": 64, "steps": 4}


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_render_returns_images_of_the_requested_size(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    params = RenderParams(width=128, height=64, steps=3, num_images=2, seed=7)
    images = tiny_renderer.render(dragon_canvas, params)
    assert [im.image.size for im in images] == [(128, 64), (128, 64)]
    assert [im.seed for im in images] == [7, 8]
    assert images[0].metadata["seed"] == 7
    assert images[1].metadata["seed"] == 8
    assert images[0].metadata["sampler"] == "DPM++ 2M Karras"
    assert images[0].metadata["steps"] == 3


def test_render_is_deterministic_for_a_seed(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    first = tiny_renderer.render(dragon_canvas, RenderParams(**SMALL, seed=3))[0].image
    again = tiny_renderer.render(dragon_canvas, RenderParams(**SMALL, seed=3))[0].image
    other = tiny_renderer.render(dragon_canvas, RenderParams(**SMALL, seed=4))[0].image
    assert np.array_equal(_pixels(first), _pixels(again))
    assert not np.array_equal(_pixels(first), _pixels(other))


def test_images_of_a_batch_equal_single_renders_of_their_seeds(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    batch = tiny_renderer.render(dragon_canvas, RenderParams(**SMALL, seed=10, num_images=2))
    single = tiny_renderer.render(dragon_canvas, RenderParams(**SMALL, seed=11))[0]
    assert np.abs(_pixels(batch[1].image) - _pixels(single.image)).max() <= 1


def test_hires_fix_upscales_and_runs_its_own_steps(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    calls: list[tuple[int, int]] = []
    params = RenderParams(**SMALL, hires_scale=2.0, hires_steps=3, hires_denoise=0.5)
    images = tiny_renderer.render(dragon_canvas, params, lambda s, t, p: calls.append((s, t)))
    assert images[0].image.size == (128, 128)
    assert images[0].metadata["output_width"] == 128
    assert calls == [(s, 7) for s in range(1, 8)]


def test_sketch_start_uses_the_colour_sketch(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    plain = tiny_renderer.render(dragon_canvas, RenderParams(**SMALL))[0].image
    sketch = tiny_renderer.render(dragon_canvas, RenderParams(**SMALL, sketch_strength=0.5))[0]
    assert sketch.image.size == (64, 64)
    assert not np.array_equal(_pixels(plain), _pixels(sketch.image))


def test_sketch_start_begins_at_init_latent_plus_scaled_noise(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, torch.Tensor] = {}

    def capture(
        latents: torch.Tensor, sigmas: torch.Tensor, *args: object, **kw: object
    ) -> Generator[DenoiseCall, torch.Tensor, torch.Tensor]:
        seen["latents"], seen["sigmas"] = latents, sigmas
        return latents
        yield  # a generator of no model calls

    monkeypatch.setattr(tiny_renderer, "denoise_steps", capture)
    tiny_renderer.render(dragon_canvas, RenderParams(**SMALL, seed=5, sketch_strength=0.5))
    start = sketch_start_pixels(dragon_canvas.process().initial_image, 64, 64)
    init = tiny_renderer.codec.encode(start)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    sigmas = omost_sigmas(4, 0.5)
    torch.testing.assert_close(seen["sigmas"], sigmas)
    torch.testing.assert_close(seen["latents"], init + noise * sigmas[0].float())


def test_sketch_start_encodes_the_sketch_once_per_render(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[int] = []
    original = tiny_renderer.vae.encode

    def counting(x: torch.Tensor) -> object:
        encoded.append(x.shape[0])
        return original(x)

    monkeypatch.setattr(tiny_renderer.vae, "encode", counting)
    params = RenderParams(**SMALL, seed=5, num_images=3, sketch_strength=0.9)
    images = tiny_renderer.render(dragon_canvas, params)
    assert len(images) == 3
    assert encoded == [1]


def test_hires_pass_size_rounds_like_omost() -> None:
    assert hires_pass_size(896, 1152, 1.25) == (1152, 1408)
    assert hires_pass_size(896, 1152, 2.0) == (1792, 2304)
    assert hires_pass_size(1024, 1024, 1.5) == (1536, 1536)
    # Python's round halves to even: 192 * 1.25 / 64 = 3.75 -> 4, 64 * 1.25 / 64 = 1.25 -> 1.
    assert hires_pass_size(192, 64, 1.25) == (256, 64)
    assert hires_pass_size(896, 1152, 1.06) == (960, 1216)


@pytest.mark.parametrize("scale", [1.0, 1.02, 1.05])
def test_hires_fix_does_not_run_up_to_scale_1_05(scale: float) -> None:
    assert hires_pass_size(896, 1152, scale) is None


def test_hires_fix_renders_at_the_rounded_size(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    params = RenderParams(width=192, height=64, steps=2, hires_scale=1.25, hires_steps=2)
    image = tiny_renderer.render(dragon_canvas, params)[0]
    assert image.image.size == (256, 64)
    assert (image.metadata["output_width"], image.metadata["output_height"]) == (256, 64)


def test_hires_fix_below_1_05_runs_no_extra_steps(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    calls: list[tuple[int, int]] = []
    params = RenderParams(**SMALL, hires_scale=1.02, hires_steps=20)
    images = tiny_renderer.render(dragon_canvas, params, lambda s, t, p: calls.append((s, t)))
    assert calls == [(s, 4) for s in range(1, 5)]
    plain = tiny_renderer.render(dragon_canvas, RenderParams(**SMALL))[0].image
    assert np.array_equal(_pixels(images[0].image), _pixels(plain))


def test_hires_fix_re_encodes_the_truncated_pixels(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs: list[torch.Tensor] = []
    encoded: list[Image.Image] = []
    denoise, encode_image = tiny_renderer.denoise_steps, tiny_renderer.encode_image

    def record_denoise(
        *args: object, **kw: object
    ) -> Generator[DenoiseCall, torch.Tensor, torch.Tensor]:
        outputs.append((yield from denoise(*args, **kw)))  # type: ignore[arg-type]
        return outputs[-1]

    def record_encode(images: list[Image.Image]) -> torch.Tensor:
        encoded.extend(images)
        return encode_image(images)

    monkeypatch.setattr(tiny_renderer, "denoise_steps", record_denoise)
    monkeypatch.setattr(tiny_renderer, "encode_image", record_encode)
    params = RenderParams(**SMALL, hires_scale=2.0, hires_steps=2, hires_denoise=0.5)
    tiny_renderer.render(dragon_canvas, params)
    vae = tiny_renderer.vae
    with torch.inference_mode():
        decoded = vae.decode(outputs[0] / vae.config.scaling_factor).sample[0]
    truncated = Image.fromarray(pixels_to_uint8(decoded))
    expected = truncated.resize((128, 128), Image.Resampling.LANCZOS)
    assert len(encoded) == 1
    assert np.array_equal(_pixels(encoded[0]), _pixels(expected))


def test_previews_show_the_denoised_estimate(
    dragon_canvas: Canvas, monkeypatch: pytest.MonkeyPatch
) -> None:
    renderer = build_tiny_renderer(preview_every=1)
    estimates: list[torch.Tensor] = []
    sampler = dpmpp_2m_steps

    def recording(
        x: torch.Tensor, schedule: Schedule, callback: SamplerCallback, blend: object = None
    ) -> SamplerSteps:
        def both(i: int, x_next: torch.Tensor, denoised: torch.Tensor) -> None:
            estimates.append(denoised.clone())
            callback(i, x_next, denoised)

        return sampler(x, schedule, both, blend)  # type: ignore[arg-type]

    monkeypatch.setattr(unet_steps, "dpmpp_2m_steps", recording)
    previews: list[Image.Image | None] = []
    renderer.render(dragon_canvas, RenderParams(**SMALL), lambda s, t, p: previews.append(p))
    assert len(previews) == len(estimates) == 4
    for preview, estimate in zip(previews, estimates, strict=True):
        assert preview is not None
        assert np.array_equal(_pixels(preview), _pixels(latent_preview(estimate[0])))


def test_on_step_reports_every_step_with_occasional_previews(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    calls: list[tuple[int, int, Image.Image | None]] = []
    tiny_renderer.render(dragon_canvas, RenderParams(width=64, height=64, steps=6),
                         lambda s, t, p: calls.append((s, t, p)))  # fmt: skip
    assert [(s, t) for s, t, _ in calls] == [(s, 6) for s in range(1, 7)]
    previews = [s for s, _, p in calls if p is not None]
    assert previews == [5, 6]
    preview = calls[-1][2]
    assert preview is not None
    assert preview.size == (8, 8)
    assert preview.mode == "RGB"


def test_an_exception_in_on_step_stops_the_render(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    class CancelledError(Exception):
        pass

    steps: list[int] = []

    def cancel(step: int, total: int, preview: Image.Image | None) -> None:
        steps.append(step)
        if step == 2:
            raise CancelledError

    with pytest.raises(CancelledError):
        tiny_renderer.render(dragon_canvas, RenderParams(**SMALL), cancel)
    assert steps == [1, 2]
    # The installed regional processor holds no context after the failed run.
    regional = [
        p
        for p in tiny_renderer.unet.attn_processors.values()
        if isinstance(p, RegionalAttnProcessor)
    ]
    assert regional
    assert all(p.context is None for p in regional)


def test_check_inputs_refuses_sizes_off_the_latent_grid() -> None:
    renderer = build_tiny_renderer()
    with pytest.raises(ValueError, match="multiples of"):
        renderer.check_inputs(RenderParams.model_construct(width=72, height=64))


def test_editing_a_region_text_changes_the_render(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    edited = dragon_canvas.model_copy(deep=True)
    edited.local_descriptions[0].description = "A glowing blue crystal tower."
    a = tiny_renderer.render(dragon_canvas, RenderParams(**SMALL))[0].image
    b = tiny_renderer.render(edited, RenderParams(**SMALL))[0].image
    assert not np.array_equal(_pixels(a), _pixels(b))
