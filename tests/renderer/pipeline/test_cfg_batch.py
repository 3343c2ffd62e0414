from __future__ import annotations

import torch
from omost_renderer.pipelines.sdxl.cfg_batch import stack_for_guidance
from omost_renderer.pipelines.sdxl.encoding import encode_plain, encode_regions
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_renderer.pipelines.sdxl.sampling import omost_sigmas
from omost_renderer.pipelines.sdxl.tiny import CLIP_WIDTH, OPEN_CLIP_WIDTH, build_tiny_renderer
from omost_schema import Canvas


def test_stack_pads_the_shorter_sequence_and_hides_the_padding(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    pos = encode_regions(tiny_renderer.encoders, dragon_canvas.process().conditions)
    neg = encode_plain(tiny_renderer.encoders, "lowres")
    batch = stack_for_guidance(neg, pos, repeats=2)
    length = pos.embeds.shape[1]
    assert length > neg.embeds.shape[1]
    assert batch.embeds.shape == (4, length, CLIP_WIDTH + OPEN_CLIP_WIDTH)
    assert batch.token_region.shape == (2, length)
    assert (batch.token_region[0, 77:] == -1).all()
    assert batch.token_region[1].tolist() == (pos.token_region + 1).tolist()
    assert (batch.embeds[:2, 77:] == 0).all()
    scale, bias = batch.context(8, 8).for_layer(16, torch.device("cpu"), torch.float32)
    assert scale.shape == (4, length)
    assert bias.shape == (4, 16, length)
    assert bias.dtype == torch.float32
    # Padding tokens of the shorter (negative) sequence are hidden from every pixel.
    assert (bias[:2, :, 77:] == float("-inf")).all()
    assert (bias[:2, :, :77] == 0).all()
    assert (scale[:2, 77:] == 0).all()


def test_batched_guidance_equals_separate_passes(dragon_canvas: Canvas) -> None:
    batched = build_tiny_renderer(batched_guidance=True)
    separate = build_tiny_renderer(batched_guidance=False)
    pos = encode_regions(batched.encoders, dragon_canvas.process().conditions)
    neg = encode_plain(batched.encoders, "lowres, bad anatomy")
    sigmas = omost_sigmas(3)
    start = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0].float()
    a = batched.denoise(start, sigmas, neg, pos, 5.0, (64, 64))
    b = separate.denoise(start, sigmas, neg, pos, 5.0, (64, 64))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # And guidance matters: cfg 1 gives another result.
    c = batched.denoise(start, sigmas, neg, pos, 1.0, (64, 64))
    assert (a - c).abs().max() > 1e-3
