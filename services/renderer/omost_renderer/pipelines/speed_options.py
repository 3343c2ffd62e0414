"""GPU speed options applied to a pipeline's denoiser at load: compile, channels-last, fused QKV.

Each is off by default (``OMOST_RENDERER_COMPILE``, ``OMOST_RENDERER_CHANNELS_LAST``,
``OMOST_RENDERER_FUSE_QKV``) until the GPU suite (``python -m benchmarks gpu``) has measured it.
None changes what a render computes beyond floating-point rounding:

* compile: regional compilation (diffusers' ``compile_repeated_blocks``: ``torch.compile`` of each
  repeated transformer block, not the whole model), so the first render pays a compile of one
  block type instead of the whole UNet or transformer;
* channels-last: the UNet's 4-D weights in NHWC memory format, which cuDNN's convolutions on
  tensor cores prefer (a transformer has no convolutions to gain from it: refused for FLUX.1 and
  FLUX.2);
* fused QKV: one projection matrix for query, key and value of each self-attention layer (and
  key and value of SDXL's cross-attention), one GEMM instead of three. The regional processors
  read the fused projections when they exist (``fused_projections`` on the layer). diffusers
  keeps the separate weights as well, so a fused layer's projections take twice their memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from omost_renderer.pipelines.families import Family


class SpeedOptionError(ValueError):
    """A speed option the model's family cannot take."""


@dataclass(frozen=True)
class SpeedOptions:
    """Which speed options to apply to the denoiser (all off: the model as loaded).

    Attributes:
        compile: Regional ``torch.compile`` of the repeated blocks.
        channels_last: UNet weights in channels-last memory format (SDXL only).
        fuse_qkv: Fused QKV (self-attention) and KV (cross-attention) projections.
    """

    compile: bool = False
    channels_last: bool = False
    fuse_qkv: bool = False


#: Families whose regional processors read fused projections (FLUX.2's double-stream blocks use
#: FLUX.1's processor; its single-stream blocks are fused in the model itself).
FUSE_QKV_FAMILIES = (Family.SDXL, Family.FLUX, Family.FLUX2)
#: Families whose denoiser has convolutions for channels-last to speed up.
CHANNELS_LAST_FAMILIES = (Family.SDXL,)


def fuse_qkv(denoiser: torch.nn.Module) -> int:
    """Fuse the projections of every attention layer of ``denoiser`` in place.

    Each diffusers attention layer gains ``to_qkv`` (self-attention; FLUX's joint attention also
    ``to_added_qkv``) or ``to_kv`` (cross-attention) and ``fused_projections = True``; the
    separate ``to_q``/``to_k``/``to_v`` stay (diffusers keeps them), so the processors installed
    later choose. The installed processors are not replaced.

    Args:
        denoiser: A diffusers UNet or transformer.

    Returns:
        The number of attention layers fused.
    """
    fused = 0
    for module in denoiser.modules():
        fuse = getattr(module, "fuse_projections", None)
        if callable(fuse) and hasattr(module, "to_q"):
            if not getattr(module, "fused_projections", False):
                with torch.no_grad():
                    fuse()
            fused += 1
    return fused


def is_fused(attn: Any) -> bool:
    """Whether a diffusers attention layer has fused projections (``fuse_qkv`` was applied)."""
    return bool(getattr(attn, "fused_projections", False))


def apply_speed_options(denoiser: Any, family: Family, options: SpeedOptions) -> None:
    """Apply ``options`` to a loaded denoiser on its device, in place.

    Fusing comes before compiling, so the compiled blocks trace the fused projections.

    Args:
        denoiser: The family's UNet or transformer (a diffusers ``ModelMixin``).
        family: Its family, to refuse what it cannot take.
        options: What to apply.

    Raises:
        SpeedOptionError: For an option the family cannot take.
    """
    if options.channels_last:
        if family not in CHANNELS_LAST_FAMILIES:
            raise SpeedOptionError(
                f"OMOST_RENDERER_CHANNELS_LAST is for UNet models (SDXL); a {family.value}"
                " transformer has no convolutions to gain from it: unset it for this worker"
            )
        denoiser.to(memory_format=torch.channels_last)
    if options.fuse_qkv:
        if family not in FUSE_QKV_FAMILIES:
            raise SpeedOptionError(
                f"OMOST_RENDERER_FUSE_QKV is not supported for {family.value}: its regional"
                " processors read the separate projections; unset it for this worker"
            )
        fuse_qkv(denoiser)
    if options.compile:
        # Regional compilation: each repeated block type compiles once; the UNet's or
        # transformer's outer code and the per-render processor changes stay eager.
        denoiser.compile_repeated_blocks()
