"""What a render's parameters and start fix before any model work, the same for every family.

Every pipeline (SDXL, FLUX.1, FLUX.2) reads a request the same way: the hires pass runs above
Omost's scale threshold at Omost's rounded size, the step count reported to ``on_step`` spans both
passes, image ``i`` has seed ``seed + i`` and its noise comes from a CPU generator (a seed gives the
same image on any device), the base pass runs the share of its schedule that the init image's or
the sketch's strength asks for, and an edit's kept part is re-noised with the base render's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omost_renderer.pipelines.render_start import RenderStart
from omost_renderer.pipelines.rendering import RenderParams, hires_size

#: The hires fix runs only above this scale (Omost's ``1.0 + eps`` with ``eps = 0.05``).
HIRES_MIN_SCALE = 1.0 + 0.05


def hires_pass_size(width: int, height: int, scale: float) -> tuple[int, int] | None:
    """Size of Omost's hires pass, or ``None`` when the hires fix does not run.

    Each side is ``round(side * scale / 64) * 64`` with Python's ``round`` (halves to even):
    896x1152 at 1.25x gives 1152x1408.

    Args:
        width: Base width in pixels.
        height: Base height in pixels.
        scale: ``hires_scale``.

    Returns:
        ``(width, height)`` of the hires pass, or ``None`` for ``scale <= 1.05``.
    """
    if not scale > HIRES_MIN_SCALE:
        return None
    # The size rule is the one the request budget counts with.
    return hires_size(width, height, scale)


@dataclass(frozen=True)
class RenderPlan:
    """The passes, seeds and start strength of one render.

    Attributes:
        hires: ``(width, height)`` of the hires pass, or ``None`` when it does not run.
        total: Steps of the whole render (base and hires pass), as ``on_step`` counts them.
        seeds: One per image: ``seed, seed + 1, ...``.
        generators: A CPU generator per seed; the base and the hires pass draw from them in turn.
        image_start: The render starts from the user's init image (``start.image``).
        strength: Share of the base pass's schedule that runs: the init image's strength, else
            the sketch's, else 1 (pure noise).
        keep: The generator of the noise that re-noises an edit's kept part (the base render's
            seed, drawn in the same order as its own noise), or ``None`` without a start.
    """

    hires: tuple[int, int] | None
    total: int
    seeds: list[int]
    generators: list[torch.Generator]
    image_start: bool
    strength: float
    keep: torch.Generator | None


def render_plan(params: RenderParams, start: RenderStart | None) -> RenderPlan:
    """The plan of a render of ``params`` from ``start`` (see the module's docstring).

    Args:
        params: The request's parameters (already checked by the family).
        start: An edit's base render or an init image, or ``None``.

    Returns:
        The render's passes, seeds, generators and start strength.
    """
    hires = hires_pass_size(params.width, params.height, params.hires_scale)
    seeds = [params.seed + i for i in range(params.num_images)]
    image_start = start is not None and start.image is not None
    return RenderPlan(
        hires=hires,
        total=params.steps + (params.hires_steps if hires else 0),
        seeds=seeds,
        generators=[torch.Generator("cpu").manual_seed(s) for s in seeds],
        image_start=image_start,
        strength=start.strength if start and image_start else params.sketch_strength or 1.0,
        keep=torch.Generator("cpu").manual_seed(start.keep_seed) if start else None,
    )
