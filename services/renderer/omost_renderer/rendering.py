"""The seam between the job service and the diffusion pipeline: parameters, results, a Protocol.

The worker only knows ``CanvasRenderer``; the SDXL pipeline and the tiny CPU pipeline implement it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Protocol

from omost_schema import Canvas
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: Omost's default negative prompt.
DEFAULT_NEGATIVE_PROMPT = "lowres, bad anatomy, bad hands, cropped, worst quality"
MAX_SIDE = 2048
MAX_IMAGES = 4
MAX_STEPS = 100
MAX_SEED = 2**32 - 1

Side = Annotated[int, Field(ge=64, le=MAX_SIDE, multiple_of=64)]


class RenderParams(BaseModel):
    """How to render a canvas. Defaults are Omost's; every field has an explicit bound."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: Side = 896
    height: Side = 1152
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 25
    cfg: Annotated[float, Field(ge=0.0, le=30.0)] = 5.0
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 12345
    negative_prompt: Annotated[str, StringConstraints(max_length=1000)] = DEFAULT_NEGATIVE_PROMPT
    num_images: Annotated[int, Field(ge=1, le=MAX_IMAGES)] = 1
    #: Hires fix: upscale factor (1.0 = off), then ``hires_steps`` at ``hires_denoise``.
    hires_scale: Annotated[float, Field(ge=1.0, le=2.0)] = 1.0
    hires_steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 20
    hires_denoise: Annotated[float, Field(gt=0.0, le=1.0)] = 0.4
    #: Start from the colour sketch at this img2img strength (Omost suggests 0.95..0.99);
    #: ``None`` starts from pure noise.
    sketch_strength: Annotated[float, Field(gt=0.0, le=1.0)] | None = None


@dataclass(frozen=True)
class RenderedImage:
    """One output image with what is needed to reproduce it."""

    image: Image.Image
    seed: int
    metadata: dict[str, object] = field(default_factory=dict)


class StepCallback(Protocol):
    """Called after every denoising step; raising an exception stops the render there."""

    def __call__(self, step: int, total: int, preview: Image.Image | None) -> None:
        """Report that ``step`` of ``total`` steps is done, with an optional small preview."""


class CanvasRenderer(Protocol):
    """Anything that turns a canvas into images (the SDXL pipeline, the tiny CPU pipeline)."""

    def render(
        self, canvas: Canvas, params: RenderParams, on_step: StepCallback | None = None
    ) -> list[RenderedImage]:
        """Render ``params.num_images`` images of ``canvas``; seeds are ``seed, seed+1, ...``."""
        ...
