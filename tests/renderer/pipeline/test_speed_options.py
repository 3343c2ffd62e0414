"""The GPU speed options (compile, channels-last, fused QKV) load and render the tiny pipelines.

A render with an option must equal the default render within float32 rounding; where an option
changes which weights the processors read (fused QKV), the separate projections are deleted after
fusing, so a processor that still read them would fail instead of silently passing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0
from omost_renderer.cli import build_renderer
from omost_renderer.config import Settings
from omost_renderer.pipelines.families import Family
from omost_renderer.pipelines.flux.pipeline_flux import OmostFluxPipeline
from omost_renderer.pipelines.flux.tiny import tiny_transformer
from omost_renderer.pipelines.flux2.pipeline_flux2 import OmostFlux2Pipeline
from omost_renderer.pipelines.flux2.tiny import tiny_flux2_transformer
from omost_renderer.pipelines.loading import load_renderer
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.sdxl.attention_processor import (
    RegionalAttnProcessor,
    RegionalContext,
    regional_attention_installed,
)
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_renderer.pipelines.sdxl.tiny import tiny_unet
from omost_renderer.pipelines.speed_options import (
    SpeedOptionError,
    SpeedOptions,
    apply_speed_options,
    fuse_qkv,
)
from omost_schema import Canvas
from pydantic import ValidationError

PARAMS = RenderParams(width=64, height=64, steps=2, seed=3)
#: Levels of 255: a fused GEMM sums in another order than three separate ones.
TOLERANCE = 2


def _pixels(renderer: object, canvas: Canvas) -> np.ndarray:
    image = renderer.render(canvas, PARAMS)[0].image  # type: ignore[attr-defined]
    return np.asarray(image).astype(np.int16)


def _drop_separate_projections(denoiser: torch.nn.Module) -> int:
    """Delete every projection a fused layer no longer needs; return how many layers lost some."""
    stripped = 0
    for module in denoiser.modules():
        if not getattr(module, "fused_projections", False):
            continue
        names = ["to_k", "to_v"] if hasattr(module, "to_kv") else ["to_q", "to_k", "to_v"]
        if hasattr(module, "to_added_qkv"):
            names += ["add_q_proj", "add_k_proj", "add_v_proj"]
        for name in names:
            delattr(module, name)
        stripped += 1
    return stripped


@pytest.mark.parametrize(
    "options", [SpeedOptions(channels_last=True), SpeedOptions(fuse_qkv=True)], ids=str
)
def test_sdxl_option_renders_the_default_image(
    options: SpeedOptions, dragon_canvas: Canvas
) -> None:
    expected = _pixels(load_renderer("tiny", "cpu"), dragon_canvas)
    renderer = load_renderer("tiny", "cpu", speed=options)
    assert isinstance(renderer, OmostSDXLPipeline)
    if options.channels_last:
        conv = renderer.unet.conv_in.weight
        assert conv.is_contiguous(memory_format=torch.channels_last)
        assert not conv.is_contiguous()
    if options.fuse_qkv:
        assert _drop_separate_projections(renderer.unet) > 0
    got = _pixels(renderer, dragon_canvas)
    assert np.abs(got - expected).max() <= TOLERANCE


def test_fused_unet_gets_the_fused_self_attention_processor() -> None:
    unet = tiny_unet().eval()
    fuse_qkv(unet)
    context = RegionalContext(torch.zeros(2, 77, dtype=torch.int64), torch.ones(1, 90, 90), 8, 8)
    with regional_attention_installed(unet, context):
        processors = unet.attn_processors
        self_attention = [p for n, p in processors.items() if n.endswith("attn1.processor")]
        cross_attention = [p for n, p in processors.items() if n.endswith("attn2.processor")]
    assert self_attention
    assert all(isinstance(p, FusedAttnProcessor2_0) for p in self_attention)
    assert cross_attention
    assert all(isinstance(p, RegionalAttnProcessor) for p in cross_attention)


@pytest.mark.parametrize("model", ["tiny-flux", "tiny-flux2"])
def test_flux_fused_qkv_renders_the_default_image(model: str, dragon_canvas: Canvas) -> None:
    expected = _pixels(load_renderer(model, "cpu"), dragon_canvas)
    renderer = load_renderer(model, "cpu", speed=SpeedOptions(fuse_qkv=True))
    assert isinstance(renderer, OmostFluxPipeline | OmostFlux2Pipeline)
    assert _drop_separate_projections(renderer.transformer) > 0
    got = _pixels(renderer, dragon_canvas)
    assert np.abs(got - expected).max() <= TOLERANCE


@pytest.mark.parametrize("model", ["tiny-flux", "tiny-flux2"])
def test_flux_refuses_channels_last(model: str) -> None:
    with pytest.raises(SpeedOptionError, match="CHANNELS_LAST"):
        load_renderer(model, "cpu", speed=SpeedOptions(channels_last=True))


# torch.compile's first import loads torch.jit modules that warn about their own deprecation.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("family", [Family.SDXL, Family.FLUX, Family.FLUX2])
def test_compile_reaches_every_repeated_block_without_compiling_yet(family: Family) -> None:
    # A compiled render on CPU takes minutes (inductor's C++ build); what is checked here is that
    # the option turns on regional compilation: each repeated block gets its compiled call,
    # which torch builds lazily at the first forward.
    denoiser = {
        Family.SDXL: tiny_unet,
        Family.FLUX: tiny_transformer,
        Family.FLUX2: tiny_flux2_transformer,
    }[family]().eval()
    apply_speed_options(denoiser, family, SpeedOptions(compile=True))
    kinds = set(denoiser._repeated_blocks)
    blocks = [m for m in denoiser.modules() if type(m).__name__ in kinds]
    assert kinds
    assert {type(b).__name__ for b in blocks} == kinds
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in blocks)
    assert getattr(denoiser, "_compiled_call_impl", None) is None


def test_settings_reach_the_loaded_renderer() -> None:
    settings = Settings(model="tiny-flux", device="cpu", dtype="float32", fuse_qkv=True)
    renderer = build_renderer(settings)
    assert getattr(renderer, "transformer").transformer_blocks[0].attn.fused_projections  # noqa: B009


def test_the_tiny_sdxl_takes_the_speed_options_on_the_cpu() -> None:
    # Its device settings default to a GPU's; the tiny SDXL runs on the CPU in float32 anyway.
    renderer = build_renderer(Settings(model="tiny", fuse_qkv=True, channels_last=True))
    unet = getattr(renderer, "unet")  # noqa: B009
    assert unet.device.type == "cpu"
    assert unet.dtype == torch.float32
    attention = [m for m in unet.modules() if isinstance(m, Attention)]
    assert attention
    assert all(m.fused_projections for m in attention)
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_text_cache_bound_is_bounded() -> None:
    assert Settings().text_cache_mb == 256
    assert Settings(text_cache_mb=0).text_cache_mb == 0
    for outside in (-1, 4097):
        with pytest.raises(ValidationError):
            Settings(text_cache_mb=outside)


@pytest.mark.parametrize("model", ["tiny", "tiny-flux"])
@pytest.mark.parametrize("megabytes", [0, 3])
def test_text_cache_bound_reaches_the_loaded_pipeline(model: str, megabytes: int) -> None:
    settings = Settings(model=model, device="cpu", dtype="float32", text_cache_mb=megabytes)
    renderer = build_renderer(settings)
    assert getattr(renderer, "text_cache").max_bytes == megabytes * 2**20  # noqa: B009


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_blocks_do_not_recompile_at_every_step(dragon_canvas: Canvas) -> None:
    # Every UNet call installs new regional processor objects; the compiled blocks must not
    # recompile for that (dynamo's guards, not the backend, decide: the eager backend keeps the
    # test fast). Expected: one graph with the per-layer cache cold, one with it warm.
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    expected = _pixels(load_renderer("tiny", "cpu"), dragon_canvas)
    renderer = load_renderer("tiny", "cpu")
    assert isinstance(renderer, OmostSDXLPipeline)
    renderer.unet.compile_repeated_blocks(backend="eager")
    for _ in range(2):
        got = _pixels(renderer, dragon_canvas)
    assert np.abs(got - expected).max() <= TOLERANCE
    assert 1 <= counters["stats"]["unique_graphs"] <= 2
    torch._dynamo.reset()
