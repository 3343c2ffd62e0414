"""The seam between the job service and the diffusion pipeline: parameters, results, a Protocol.

The worker only knows ``CanvasRenderer``; the SDXL pipeline and the tiny CPU pipeline implement it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Protocol

import numpy as np
import numpy.typing as npt
from omost_schema import Canvas
from omost_schema.json_numbers import NUMBER_ONLY
from omost_schema.occlusion import MaskMode
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

#: Omost's default negative prompt.
DEFAULT_NEGATIVE_PROMPT = "lowres, bad anatomy, bad hands, cropped, worst quality"
#: Largest base width and height (multiples of 64): Omost's UI range.
MAX_SIDE = 2048
MAX_IMAGES = 4
MAX_STEPS = 100
MAX_SEED = 2**32 - 1
#: Characters of the negative prompt (it is encoded as one 77-token prompt; the rest is cut).
MAX_NEGATIVE_PROMPT_CHARS = 1000
#: Smallest img2img strength (``sketch_strength``, ``hires_denoise``), Omost's UI minimum. The
#: sampler builds ``int(steps / strength)`` sigmas, so the bound caps that at ``10 * steps``.
MIN_STRENGTH = 0.1
#: Output pixels (after the hires fix) times ``num_images``: what one worker holds in memory at
#: once. The UNet's activations (fused attention) grow with the pixels of the whole batch, so this
#: is four 1024x1024 images, four at Omost's default 896x1152, or one 2048x2048.
MAX_REQUEST_PIXELS = 2048 * 2048
#: Denoising work of one request in pixel-steps: ``steps`` times the base pixels plus
#: ``hires_steps`` times the hires pixels, times ``num_images``. This is what the render time
#: grows with; the budget is 100 steps at the whole pixel budget.
MAX_REQUEST_PIXEL_STEPS = MAX_STEPS * MAX_REQUEST_PIXELS
#: Above this ``hires_scale`` the hires fix runs (Omost's rule); the budget counts it from 1.0 on.
HIRES_OFF = 1.0

Side = Annotated[int, Field(ge=64, le=MAX_SIDE, multiple_of=64), NUMBER_ONLY]
Strength = Annotated[float, Field(ge=MIN_STRENGTH, le=1.0), NUMBER_ONLY]


def hires_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size of the hires pass, as Omost computes it: each side scaled and rounded to 64.

    Args:
        width: Base width.
        height: Base height.
        scale: ``hires_scale``.

    Returns:
        ``(width, height)`` of the hires pass (never below the base size).
    """
    return (
        max(width, round(width * scale / 64) * 64),
        max(height, round(height * scale / 64) * 64),
    )


class RenderParams(BaseModel):
    """How to render a canvas. Defaults are Omost's; every field has an explicit bound.

    Beyond the bounds of each field, a request's pixels and its denoising work are bounded as a
    whole (``MAX_REQUEST_PIXELS``, ``MAX_REQUEST_PIXEL_STEPS``), so that every accepted request
    fits in one worker's memory and finishes in a bounded time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: Side = 896
    height: Side = 1152
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS), NUMBER_ONLY] = 25
    cfg: Annotated[float, Field(ge=0.0, le=30.0), NUMBER_ONLY] = 5.0
    seed: Annotated[int, Field(ge=0, le=MAX_SEED), NUMBER_ONLY] = 12345
    negative_prompt: Annotated[str, StringConstraints(max_length=MAX_NEGATIVE_PROMPT_CHARS)] = (
        DEFAULT_NEGATIVE_PROMPT
    )
    num_images: Annotated[int, Field(ge=1, le=MAX_IMAGES), NUMBER_ONLY] = 1
    #: Hires fix: upscale factor (1.0 = off), then ``hires_steps`` at ``hires_denoise``.
    hires_scale: Annotated[float, Field(ge=1.0, le=2.0), NUMBER_ONLY] = 1.0
    hires_steps: Annotated[int, Field(ge=1, le=MAX_STEPS), NUMBER_ONLY] = 20
    hires_denoise: Strength = 0.4
    #: Start from the colour sketch at this img2img strength (Omost suggests 0.95..0.99);
    #: ``None`` starts from pure noise.
    sketch_strength: Strength | None = None
    #: Region masks: ``omost`` (overlapping boxes all claim their pixels, as in Omost) or
    #: ``occlusion`` (a nearer box is removed from the masks of farther local regions, each
    #: keeping at least a quarter of its box; the global region keeps the whole image).
    mask_mode: MaskMode = "omost"

    @property
    def hires(self) -> bool:
        """Whether the request asks for a hires pass (counted by the budget from 1.0 on)."""
        return self.hires_scale > HIRES_OFF

    def request_pixels(self) -> int:
        """Output pixels (after the hires fix) times ``num_images``."""
        width, height = self.width, self.height
        if self.hires:
            width, height = hires_size(width, height, self.hires_scale)
        return width * height * self.num_images

    def pixel_steps(self) -> int:
        """Denoising work: steps times pixels of each pass, times ``num_images``."""
        work = self.steps * self.width * self.height
        if self.hires:
            width, height = hires_size(self.width, self.height, self.hires_scale)
            work += self.hires_steps * width * height
        return work * self.num_images

    @model_validator(mode="after")
    def _within_budget(self) -> RenderParams:
        pixels = self.request_pixels()
        if pixels > MAX_REQUEST_PIXELS:
            raise PydanticCustomError(
                "render_pixels",
                "width x height (after hires_scale) x num_images is {pixels} pixels; the limit"
                " per request is {limit} (e.g. four 1024x1024 images or one 2048x2048)",
                {"pixels": pixels, "limit": MAX_REQUEST_PIXELS, "param": self._pixel_param()},
            )
        work = self.pixel_steps()
        if work > MAX_REQUEST_PIXEL_STEPS:
            raise PydanticCustomError(
                "render_steps",
                "steps x width x height (+ hires_steps x hires pixels) x num_images is {work}"
                " pixel-steps; the limit per request is {limit} (100 steps at {pixels} pixels)",
                {
                    "work": work,
                    "limit": MAX_REQUEST_PIXEL_STEPS,
                    "pixels": MAX_REQUEST_PIXELS,
                    "param": "hires_steps" if self.hires else "steps",
                },
            )
        return self

    def _pixel_param(self) -> str:
        # The field a client would most naturally lower to fit the budget.
        if self.num_images > 1:
            return "num_images"
        return "hires_scale" if self.hires else "width"


@dataclass(frozen=True)
class RenderedImage:
    """One output image with what is needed to reproduce it.

    ``latents`` are the final latents of each denoising pass (``base``, ``hires``), float32
    (C, h, w): what a later edit keeps outside its repaint area. A renderer that cannot edit
    leaves them empty.
    """

    image: Image.Image
    seed: int
    metadata: dict[str, object] = field(default_factory=dict)
    latents: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)


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
