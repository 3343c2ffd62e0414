"""Omost's regional-attention SDXL renderer as one readable pipeline.

``OmostSDXLPipeline.render`` turns a ``Canvas`` into images in numbered steps:

1. check the inputs; plan the passes, seeds and start strength (``render_plan``);
2. encode the canvas's regions and the negative prompt (``encoding``);
3. prepare the starting latents: noise from CPU generators (so a seed gives the same image on
   any device), optionally on top of the blurred colour sketch, VAE-encoded once
   (``sketch_start``);
4. denoise with DPM++ 2M on Omost's Karras schedule (``sampling``), positive and negative in one
   UNet call per step, cross-attention regional (``attention_processor``);
5. the hires fix when ``hires_scale > 1.05``: decode, LANCZOS upscale to the scaled size rounded
   to 64, encode, denoise again at partial strength;
6. decode with the VAE (``vae_codec``: per image, tiled above a size).

A ``RenderStart`` (``render_start``) starts a pass from an edit's base render or the user's
image: the repaint area's mask at the latent resolution, and after every step the
masked-inpainting blend (``pipelines.inpaint_blend``) keeps the base outside it.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import torch
from omost_schema import Canvas
from omost_schema.occlusion import occlusion_conditions
from PIL import Image

from omost_renderer.pipelines.inpaint_blend import InpaintBlend
from omost_renderer.pipelines.preview import latent_preview
from omost_renderer.pipelines.render_plan import render_plan
from omost_renderer.pipelines.render_start import (
    BASE_PASS,
    HIRES_PASS,
    RenderStart,
    finished_renders,
)
from omost_renderer.pipelines.rendering import RenderedImage, RenderParams, StepCallback
from omost_renderer.pipelines.sdxl.encoding import (
    EncodedPrompt,
    TextEncoders,
    encode_plain,
    encode_regions,
)
from omost_renderer.pipelines.sdxl.sampling import (
    SamplerBlend,
    omost_sigmas,
)
from omost_renderer.pipelines.sdxl.unet_steps import UNetSteps
from omost_renderer.pipelines.sketch_start import sketch_start_pixels
from omost_renderer.pipelines.step_batch import (
    DenoiseCall,
    RenderSteps,
    drive_alone,
    in_inference_mode,
    render_alone,
)
from omost_renderer.pipelines.step_progress import StepProgress
from omost_renderer.pipelines.text_cache import DEFAULT_TEXT_CACHE_BYTES, TextEncodingCache
from omost_renderer.pipelines.vae_codec import (
    TILE_ABOVE_LATENT_SIDE,
    TILE_LATENT_SIDE,
    VaeCodec,
    uint8_to_pixels,
)

SAMPLER_NAME = "DPM++ 2M Karras"


class OmostSDXLPipeline:
    """SDXL with Omost's regional prompts; implements ``CanvasRenderer``.

    Args:
        unet: A diffusers ``UNet2DConditionModel`` (SDXL layout, ``text_time`` conditioning).
        vae: A diffusers ``AutoencoderKL`` (float32, bfloat16, or float16 only when fp16-fixed;
            see ``loading.vae_dtype``).
        encoders: The two tokenizers and text encoders.
        model_name: Reported in each image's metadata.
        preview_every: A preview image every this many steps (and at the last).
        batched_guidance: One UNet call per step for negative and positive (default). ``False``
            runs them separately, as Omost does (same result, slower).
        vae_tile_above: Latent side above which the VAE decodes and encodes in tiles.
        vae_tile: Side of one VAE tile, in latents.
        text_cache_bytes: Bound of the cache of encoded region texts (``text_cache``); 0 off.
    """

    #: Renders from a ``RenderStart`` (edits, init images).
    supports_start = True

    def __init__(
        self,
        unet: Any,
        vae: Any,
        encoders: TextEncoders,
        *,
        model_name: str = "sdxl",
        preview_every: int = 5,
        batched_guidance: bool = True,
        vae_tile_above: int = TILE_ABOVE_LATENT_SIDE,
        vae_tile: int = TILE_LATENT_SIDE,
        text_cache_bytes: int = DEFAULT_TEXT_CACHE_BYTES,
    ) -> None:
        self.unet = unet
        self.vae = vae
        self.codec = VaeCodec(vae, tile_above=vae_tile_above, tile=vae_tile)
        self.encoders = encoders
        self.model_name = model_name
        self.preview_every = preview_every
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        #: Encoded region texts by model and exact ids (the worker reports its counters).
        self.text_cache = TextEncodingCache(text_cache_bytes)
        #: The UNet's sampling passes and batched calls.
        self.unet_steps = UNetSteps(unet, batched_guidance)

    @property
    def batched_guidance(self) -> bool:
        """Negative and positive rows in one UNet call (``False``: Omost's separate passes)."""
        return self.unet_steps.batched_guidance

    @property
    def device(self) -> torch.device:
        """Where the UNet runs."""
        return self.unet.device  # type: ignore[no-any-return]

    # -- 1. inputs ---------------------------------------------------------------------------
    def check_inputs(self, params: RenderParams) -> None:
        """Refuse sizes the VAE and UNet cannot divide evenly.

        Raises:
            ValueError: When width or height is not a multiple of the latent grid.
        """
        multiple = self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        for side in (params.width, params.height):
            if side % multiple:
                raise ValueError(f"width and height must be multiples of {multiple}, got {side}")

    # -- 3. latents ----------------------------------------------------------------------------
    def _noise(self, generators: list[torch.Generator], height: int, width: int) -> torch.Tensor:
        shape = (1, self.unet.config.in_channels, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)  # fmt: skip
        # CPU generators: the same seed gives the same noise on every device.
        noise = [torch.randn(shape, generator=g, dtype=torch.float32) for g in generators]
        return torch.cat(noise).to(self.device)

    def encode_image(self, images: list[Image.Image]) -> torch.Tensor:
        """VAE-encode RGB images to scaled latents (the distribution's mode, as Omost does).

        Args:
            images: Same-size RGB images.

        Returns:
            float32 (len(images), 4, h/8, w/8), encoded one at a time (tiled when large).
        """
        pixels = torch.cat([uint8_to_pixels(np.asarray(im.convert("RGB"))) for im in images])
        return self.codec.encode(pixels).float().to(self.device)

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        """Decode scaled latents to RGB images, one at a time (tiled when large).

        Pixels become uint8 by truncation, as Omost's ``pytorch2numpy`` does.
        """
        return [Image.fromarray(array) for array in self.codec.decode(latents)]

    # -- 4. denoising --------------------------------------------------------------------------
    def denoise_steps(
        self,
        latents: torch.Tensor,
        sigmas: torch.Tensor,
        negative: EncodedPrompt,
        positive: EncodedPrompt,
        cfg: float,
        pixel_size: tuple[int, int],
        progress: StepProgress | None = None,
        blend: SamplerBlend | None = None,
    ) -> Generator[DenoiseCall, torch.Tensor, torch.Tensor]:
        """One sampling pass as a generator of UNet calls (``UNetSteps.pass_steps``).

        Args:
            latents: float32 (k, 4, h, w), already noised to ``sigmas[0]``.
            sigmas: Descending noise levels ending with 0.
            negative: The negative conditioning.
            positive: The canvas's regional conditioning.
            cfg: Guidance scale.
            pixel_size: ``(height, width)`` of the image, for SDXL's time ids.
            progress: Reports each step.
            blend: Rewrites the latents after each step (an edit's inpainting blend).

        Returns:
            (as the generator's value) The denoised latents, float32 (k, 4, h, w).
        """
        return self.unet_steps.pass_steps(latents, sigmas, negative, positive, cfg, pixel_size,
                                          progress, blend)  # fmt: skip

    def denoise(
        self,
        latents: torch.Tensor,
        sigmas: torch.Tensor,
        negative: EncodedPrompt,
        positive: EncodedPrompt,
        cfg: float,
        pixel_size: tuple[int, int],
        progress: StepProgress | None = None,
        blend: SamplerBlend | None = None,
    ) -> torch.Tensor:
        """Run one sampling pass alone (:meth:`denoise_steps` with batches of one).

        Returns:
            The denoised latents, float32 (k, 4, h, w).
        """
        steps = self.denoise_steps(latents, sigmas, negative, positive, cfg, pixel_size,
                                   progress, blend)  # fmt: skip
        return drive_alone(self, in_inference_mode(steps))

    def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
        """Evaluate calls of one key in one UNet call (``BatchingRenderer``).

        Each call is one job's ``[neg] * k + [pos] * k`` rows (see ``UNetSteps.denoise_batch``).

        Args:
            calls: Pending calls with equal keys (from :meth:`denoise_steps`).

        Returns:
            Per call, its guided denoised estimate, float32 (k, 4, h, w).
        """
        return self.unet_steps.denoise_batch(calls)

    # -- the whole render ----------------------------------------------------------------------
    def render(
        self,
        canvas: Canvas,
        params: RenderParams,
        on_step: StepCallback | None = None,
        *,
        start: RenderStart | None = None,
    ) -> list[RenderedImage]:
        """Render ``params.num_images`` images of ``canvas`` (seeds ``seed, seed + 1, ...``).

        The render of :meth:`render_steps`, driven alone.

        Args:
            canvas: A validated canvas.
            params: Size, steps, guidance, seed, hires fix and sketch start.
            on_step: Called after every denoising step with an occasional preview; an exception
                it raises stops the render and propagates.
            start: An edit's base render or an init image to start from (see
                ``render_start``); the repaint area's outside keeps it.

        Returns:
            One image per seed, with the parameters that reproduce it and the final latents
            of each pass.
        """
        return render_alone(self, self.render_steps(canvas, params, on_step, start=start))

    def render_steps(
        self,
        canvas: Canvas,
        params: RenderParams,
        on_step: StepCallback | None = None,
        *,
        start: RenderStart | None = None,
    ) -> RenderSteps:
        """The render of :meth:`render` as a generator of UNet calls (``step_batch``).

        The per-job work (text, start latents, the hires pass's decode and encode, the final
        decode) runs inside the generator; each step's UNet evaluation is yielded. Every resume
        runs in inference mode (the driver: ``StepBatch``, ``render_alone``).
        """
        # 1. inputs
        self.check_inputs(params)
        plan = render_plan(params, start)

        # 2. text (region encodings come from the text cache when seen before)
        processed = canvas.process()
        conditions = processed.conditions
        if params.mask_mode == "occlusion":
            conditions = occlusion_conditions(canvas, conditions)
        positive = encode_regions(self.encoders, conditions, self.text_cache, self.model_name)
        negative = encode_plain(self.encoders, params.negative_prompt, self.text_cache,
                                self.model_name)  # fmt: skip

        # 3. starting latents
        height, width = params.height, params.width
        sigmas = omost_sigmas(params.steps, plan.strength)
        latents = self._noise(plan.generators, height, width) * sigmas[0].float()
        kept = self._kept_latents(start, BASE_PASS, width, height)
        if plan.image_start and kept is not None:
            latents = latents + kept  # img2img of the user's image
        elif params.sketch_strength is not None:
            # One encode per render: every image starts from the same sketch latent.
            sketch = sketch_start_pixels(processed.initial_image, height, width)
            latents = latents + self.codec.encode(sketch).float().to(self.device)
        blend = self._blend(start, kept, plan.keep, params.steps, width, height)
        if blend is not None:
            latents = blend.start(latents, float(sigmas[0]))

        # 4. denoise
        progress = StepProgress(on_step, 0, plan.total, self.preview_every, latent_preview)
        latents = yield from self.denoise_steps(latents, sigmas, negative, positive, params.cfg,
                                                (height, width), progress, blend)  # fmt: skip
        passes = {BASE_PASS: latents}

        # 5. hires fix
        if plan.hires:
            width, height = plan.hires
            upscaled = [
                im.resize((width, height), Image.Resampling.LANCZOS) for im in self.decode(latents)
            ]
            sigmas = omost_sigmas(params.hires_steps, params.hires_denoise)
            noise = self._noise(plan.generators, height, width)
            latents = self.encode_image(upscaled) + noise * sigmas[0].float()
            kept = self._kept_latents(start, HIRES_PASS, width, height)
            blend = self._blend(start, kept, plan.keep, params.hires_steps, width, height)
            if blend is not None:
                latents = blend.start(latents, float(sigmas[0]))
            progress = StepProgress(on_step, params.steps, plan.total, self.preview_every,
                                    latent_preview)  # fmt: skip
            latents = yield from self.denoise_steps(latents, sigmas, negative, positive,
                                                    params.cfg, (height, width), progress,
                                                    blend)  # fmt: skip
            passes[HIRES_PASS] = latents

        # 6. decode
        images = self.decode(latents)
        meta = self._metadata(params, width, height)
        return finished_renders(images, plan.seeds, passes, meta, start, self.vae_scale_factor)

    def _kept_latents(
        self, start: RenderStart | None, name: str, width: int, height: int
    ) -> torch.Tensor | None:
        """The clean latents a pass keeps outside its repaint area: (1, 4, h/8, w/8) or None."""
        if start is None:
            return None
        if start.image is not None:
            image = start.image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
            return self.encode_image([image])
        stored = start.latents.get(name)
        if stored is None:
            return None
        shape = (self.unet.config.in_channels, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)  # fmt: skip
        if tuple(stored.shape) != shape:
            raise ValueError(f"the edit's base latents are {stored.shape}, this pass needs {shape}")
        return torch.from_numpy(stored).float()[None].to(self.device)

    def _blend(
        self,
        start: RenderStart | None,
        kept: torch.Tensor | None,
        keep: torch.Generator | None,
        steps: int,
        width: int,
        height: int,
    ) -> InpaintBlend | None:
        """The inpainting blend of one pass, or ``None`` when it repaints everything."""
        if start is None or start.repaint is None or kept is None or keep is None:
            return None
        noise = self._noise([keep], height, width)
        mask = start.repaint.latent_mask(width, height, self.vae_scale_factor)
        mask_t = torch.from_numpy(mask)[None, None].to(self.device)
        return InpaintBlend(base=kept, noise=noise, mask=mask_t, steps=steps)

    def _metadata(self, params: RenderParams, width: int, height: int) -> dict[str, object]:
        return {
            **params.model_dump(),
            "model": self.model_name,
            "sampler": SAMPLER_NAME,
            "output_width": width,
            "output_height": height,
            "guidance": "batched" if self.batched_guidance else "separate",
        }
