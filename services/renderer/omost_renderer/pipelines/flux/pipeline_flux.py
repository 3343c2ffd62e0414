"""Omost's regional prompts on FLUX.1 as one readable pipeline.

``OmostFluxPipeline.render`` turns a ``Canvas`` into images in numbered steps:

1. check the inputs, and the parameters FLUX does not take (``family_params``); plan the passes,
   seeds and start strength (``render_plan``);
2. encode the canvas: every region's T5 sequence concatenated, CLIP pooled from the global
   region (``encoding``), and the joint attention mask of its regions (``regional_schedule``);
3. prepare the starting latents: noise from CPU generators (a seed gives the same image on any
   device), packed into 2x2 tokens, optionally on top of the blurred colour sketch by
   flow-matching interpolation, an edit's kept part blended in (``sketch_start``, ``packed_start``);
4. denoise with flow-matching Euler on diffusers' FLUX schedule (``flow_match``, batched in
   ``transformer_steps``), reporting steps (``step_progress``); the regional mask reaches the
   attention processors (``attention_processor``) through ``joint_attention_kwargs`` in the first
   ``regional_steps`` steps, at every ``regional_blocks``-th block, blended with an unmasked pass
   by ``base_ratio``;
5. the hires fix when ``hires_scale > 1.05`` (Omost's rule): decode, LANCZOS upscale, encode,
   denoise again from ``hires_denoise``;
6. decode with the VAE (``vae_codec``: per image, tiled above a size).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omost_schema import Canvas
from omost_schema.occlusion import MaskMode, region_conditions
from PIL import Image

from omost_renderer.pipelines.family_params import FamilyParams, check_family_params, is_set
from omost_renderer.pipelines.flow_match import (
    FLUX_DEV_SCHEDULER,
    flow_sigmas,
)
from omost_renderer.pipelines.flux.attention_processor import install_regional_processors
from omost_renderer.pipelines.flux.encoding import (
    T5_MAX_TOKENS,
    FluxPrompt,
    FluxTextEncoders,
    encode_canvas,
)
from omost_renderer.pipelines.flux.step_inputs import FluxPassText
from omost_renderer.pipelines.flux.transformer_steps import TransformerSteps
from omost_renderer.pipelines.inpaint_blend import InpaintBlend
from omost_renderer.pipelines.packed_latents import (
    PATCH,
    check_packed_size,
    image_ids,
    pack,
    packed_preview,
    unpack,
)
from omost_renderer.pipelines.packed_start import (
    KeptPart,
    kept_part,
    kept_tokens,
    pass_start,
    resized_pixels,
)

# Re-exported: the schedule's documented home is this module (the CLI and loaders import it here).
from omost_renderer.pipelines.regional_schedule import RegionalSchedule as RegionalSchedule
from omost_renderer.pipelines.render_plan import render_plan
from omost_renderer.pipelines.render_start import (
    BASE_PASS,
    HIRES_PASS,
    RenderStart,
    finished_renders,
)
from omost_renderer.pipelines.rendering import RenderedImage, RenderParams, StepCallback
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
from omost_renderer.pipelines.vae_codec import VaeCodec

SAMPLER_NAME = "flow-match Euler"
#: FLUX.1-dev's distilled guidance when a request leaves ``cfg`` unset (diffusers' default).
DEFAULT_GUIDANCE = 3.5


@dataclass
class _Conditioning:
    """A render's text conditioning on the transformer's device, and its regional mask."""

    prompt: FluxPrompt
    mask: torch.Tensor | None
    text_ids: torch.Tensor
    image_ids: torch.Tensor


class OmostFluxPipeline:
    """FLUX.1 with Omost's regional prompts; implements ``CanvasRenderer``.

    Args:
        transformer: A diffusers ``FluxTransformer2DModel``.
        vae: A diffusers ``AutoencoderKL`` (FLUX's: 16 channels, ``shift_factor``).
        encoders: CLIP and T5 tokenizers and encoders.
        scheduler_config: The model's ``FlowMatchEulerDiscreteScheduler`` config.
        model_name: Reported in each image's metadata.
        schedule: Where the regional mask applies.
        preview_every: A preview image every this many steps (and at the last).
        max_region_tokens: T5 tokens of one region at most (T5's 512 by default).
        regional: ``False`` keeps diffusers' stock processors (a reference for tests).
        text_cache_bytes: Bound of the cache of encoded region texts (``text_cache``); 0 off.
    """

    #: Renders from a ``RenderStart`` (edits, init images).
    supports_start = True

    def __init__(
        self,
        transformer: Any,
        vae: Any,
        encoders: FluxTextEncoders,
        *,
        scheduler_config: dict[str, Any] | None = None,
        model_name: str = "flux",
        schedule: RegionalSchedule | None = None,
        preview_every: int = 5,
        max_region_tokens: int = T5_MAX_TOKENS,
        regional: bool = True,
        text_cache_bytes: int = DEFAULT_TEXT_CACHE_BYTES,
    ) -> None:
        self.transformer = transformer
        self.vae = vae
        self.codec = VaeCodec(vae)
        self.encoders = encoders
        self.scheduler_config = dict(scheduler_config or FLUX_DEV_SCHEDULER)
        self.model_name = model_name
        self.schedule = schedule or RegionalSchedule()
        self.preview_every = preview_every
        self.max_region_tokens = max_region_tokens
        self.regional = regional
        #: Encoded region texts by model and exact ids (the worker reports its counters).
        self.text_cache = TextEncodingCache(text_cache_bytes)
        #: The transformer's sampling passes and batched calls.
        self.transformer_steps = TransformerSteps(transformer, self.schedule, regional)
        if regional:
            # Once: the processors hold their block index only, never a render's state.
            install_regional_processors(transformer)
        self.vae_scale_factor = self.codec.scale_factor
        # Model-space latents are (z - shift) * scale; the codec works with z * scale.
        self._latent_offset = float(getattr(vae.config, "shift_factor", None) or 0.0) * float(
            vae.config.scaling_factor
        )

    @property
    def device(self) -> torch.device:
        """Where the transformer runs."""
        return self.transformer.device  # type: ignore[no-any-return]

    @property
    def family_params(self) -> FamilyParams:
        """The request parameters this model takes, maps or refuses."""
        distilled = bool(self.transformer.config.guidance_embeds)
        return FamilyParams(
            family="flux", cfg="guidance" if distilled else None, negative_prompt=False, hires=True
        )

    # -- 1. inputs ---------------------------------------------------------------------------
    def check_inputs(self, params: RenderParams) -> None:
        """Refuse sizes the packed latent cannot hold and parameters FLUX does not take.

        Raises:
            ValueError: When width or height is not a multiple of 16 (VAE 8x, 2x2 patches).
            UnsupportedParamError: For a parameter this model does not take (``cfg`` without
                distilled guidance, ``negative_prompt``), when it is not at its default.
        """
        check_packed_size(params.width, params.height, self.vae_scale_factor)
        check_family_params(self.family_params, params)

    # -- 2. conditioning ---------------------------------------------------------------------
    def condition(
        self, canvas: Canvas, latent_size: tuple[int, int], mask_mode: MaskMode = "omost"
    ) -> _Conditioning:
        """Encode the canvas and build its joint mask for a latent of ``latent_size``.

        ``mask_mode="occlusion"`` removes nearer boxes from farther regions' masks
        (``omost_schema.occlusion``), as the SDXL pipeline does.
        """
        conditions = region_conditions(canvas, mask_mode)
        prompt = encode_canvas(self.encoders, conditions, self.max_region_tokens,
                               self.text_cache, self.model_name)  # fmt: skip
        dtype = self.transformer.dtype
        prompt = FluxPrompt(
            prompt.embeds.to(self.device, dtype),
            prompt.token_region,
            prompt.masks,
            prompt.pooled.to(self.device, dtype),
        )
        return self.conditioning_at(prompt, latent_size)

    def conditioning_at(self, prompt: FluxPrompt, latent_size: tuple[int, int]) -> _Conditioning:
        """An encoded prompt's conditioning for a latent of ``latent_size``: its mask and ids.

        The hires pass calls this with the base pass's prompt, so the text is encoded once.
        """
        rows, cols = latent_size[0] // PATCH, latent_size[1] // PATCH
        dtype = self.transformer.dtype
        mask = None
        if self.regional:
            mask = self.schedule.joint_bias(prompt.token_region, prompt.masks, rows, cols, dtype,
                                            self.device)  # fmt: skip
        return _Conditioning(
            prompt=prompt,
            mask=mask,
            text_ids=torch.zeros(prompt.embeds.shape[1], 3, device=self.device, dtype=dtype),
            image_ids=image_ids(rows, cols).to(self.device, dtype),
        )

    # -- 3. latents ----------------------------------------------------------------------------
    def noise(self, generators: list[torch.Generator], height: int, width: int) -> torch.Tensor:
        """Noise tokens (k, N, F) of a ``height`` x ``width`` image, one row per generator."""
        channels = self.transformer.config.in_channels // (PATCH * PATCH)
        shape = (1, channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        # CPU generators: the same seed gives the same noise on every device.
        noise = [torch.randn(shape, generator=g, dtype=torch.float32) for g in generators]
        return pack(torch.cat(noise)).to(self.device)

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE-encode pixels in [-1, 1], (k, 3, H, W), to packed model-space latents (float32)."""
        latents = self.codec.encode(pixels).float() - self._latent_offset
        return pack(latents).to(self.device)

    def decode(self, tokens: torch.Tensor, height: int, width: int) -> list[Image.Image]:
        """Decode packed latents of a ``height`` x ``width`` image to RGB images."""
        size = (height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = unpack(tokens.float().cpu(), *size) + self._latent_offset
        return [Image.fromarray(array) for array in self.codec.decode(latents)]

    # -- 4. denoising --------------------------------------------------------------------------
    def _guidance(self, params: RenderParams, k: int) -> torch.Tensor | None:
        if not self.transformer.config.guidance_embeds:
            return None
        value = params.cfg if is_set(params, "cfg") else DEFAULT_GUIDANCE
        return torch.full((k,), value, device=self.device, dtype=torch.float32)

    def _pass_text(
        self, conditioning: _Conditioning, guidance: torch.Tensor | None
    ) -> FluxPassText:
        prompt = conditioning.prompt
        return FluxPassText(prompt.embeds, prompt.pooled, guidance, conditioning.image_ids,
                            conditioning.mask)  # fmt: skip

    def denoise_steps(
        self,
        latents: torch.Tensor,
        sigmas: torch.Tensor,
        conditioning: _Conditioning,
        guidance: torch.Tensor | None,
        progress: StepProgress | None = None,
        blend: InpaintBlend | None = None,
    ) -> Generator[DenoiseCall, torch.Tensor, torch.Tensor]:
        """One Euler pass as a generator of transformer calls (``TransformerSteps.pass_steps``).

        Args:
            latents: float32 (k, N, 4C), already at ``sigmas[0]``.
            sigmas: Descending noise levels ending with 0.
            conditioning: The canvas's text and mask.
            guidance: FLUX.1-dev's distilled guidance per image, or ``None``.
            progress: Reports each step.
            blend: An edit's inpainting blend after each step.

        Returns:
            (as the generator's value) The denoised packed latents, float32 (k, N, 4C).
        """
        text = self._pass_text(conditioning, guidance)
        return self.transformer_steps.pass_steps(latents, sigmas, text, progress, blend)

    def denoise(
        self,
        latents: torch.Tensor,
        sigmas: torch.Tensor,
        conditioning: _Conditioning,
        guidance: torch.Tensor | None,
        progress: StepProgress | None = None,
        blend: InpaintBlend | None = None,
    ) -> torch.Tensor:
        """Run one pass alone (:meth:`denoise_steps` with batches of one).

        Returns:
            The denoised packed latents, float32 (k, N, 4C).
        """
        steps = self.denoise_steps(latents, sigmas, conditioning, guidance, progress, blend)
        return drive_alone(self, in_inference_mode(steps))

    def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
        """Evaluate calls of one key in one transformer call (``BatchingRenderer``).

        Rows are every job's images in order (see ``TransformerSteps.denoise_batch``).

        Args:
            calls: Pending calls with equal keys (from :meth:`denoise_steps`).

        Returns:
            Per call, the velocity of its rows, (k, N, 4C) in the transformer's dtype.
        """
        return self.transformer_steps.denoise_batch(calls)

    def _run(
        self,
        start: torch.Tensor | None,
        noise: torch.Tensor,
        steps: int,
        strength: float,
        conditioning: _Conditioning,
        guidance: torch.Tensor | None,
        progress: StepProgress,
        kept: KeptPart | None = None,
    ) -> Generator[DenoiseCall, torch.Tensor, torch.Tensor]:
        sigmas = flow_sigmas(steps, strength, noise.shape[1], self.scheduler_config)
        latents, blend = pass_start(start, noise, sigmas[0].to(self.device), steps, kept)
        return (yield from self.denoise_steps(latents, sigmas, conditioning, guidance, progress,
                                              blend))  # fmt: skip

    def _progress(
        self, on_step: StepCallback | None, offset: int, total: int, height: int, width: int
    ) -> StepProgress:
        size = (height // self.vae_scale_factor, width // self.vae_scale_factor)

        def preview(tokens: torch.Tensor) -> Image.Image:
            return packed_preview(tokens, *size)

        return StepProgress(on_step, offset, total, self.preview_every, preview)

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
            start: An edit's base render or an init image (``render_start``); outside its
                repaint area the flow-matching blend keeps it.

        Returns:
            One image per seed, with the parameters that reproduce it and the final packed
            latents of each pass.
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
        """The render of :meth:`render` as a generator of transformer calls (``step_batch``).

        The per-job work (text, start latents, the hires pass's decode and encode, the final
        decode) runs inside the generator; each step's evaluation is yielded. Every resume runs
        in inference mode (the driver: ``StepBatch``, ``render_alone``).
        """
        # 1. inputs
        self.check_inputs(params)
        plan = render_plan(params, start)
        guidance = self._guidance(params, len(plan.seeds))
        height, width = params.height, params.width
        scale = self.vae_scale_factor

        # 2. text and mask
        conditioning = self.condition(canvas, (height // scale, width // scale), params.mask_mode)

        # 3. starting latents
        init = None
        if start is not None and plan.image_start:
            init = kept_tokens(self, start, BASE_PASS, width, height)
        elif params.sketch_strength is not None:
            # One encode per render: every image starts from the same sketch latent.
            sketch = canvas.process().initial_image
            init = self.encode_pixels(sketch_start_pixels(sketch, height, width))
        noise = self.noise(plan.generators, height, width)

        # 4. denoise
        latents = yield from self._run(
            init,
            noise,
            params.steps,
            plan.strength,
            conditioning,
            guidance,
            self._progress(on_step, 0, plan.total, height, width),
            kept_part(self, start, BASE_PASS, plan.keep, width, height),
        )
        passes = {BASE_PASS: latents}

        # 5. hires fix
        if plan.hires:
            images = self.decode(latents, height, width)
            width, height = plan.hires
            init = self.encode_pixels(resized_pixels(images, width, height))
            latent = (height // scale, width // scale)
            conditioning = self.conditioning_at(conditioning.prompt, latent)
            latents = yield from self._run(
                init,
                self.noise(plan.generators, height, width),
                params.hires_steps,
                params.hires_denoise,
                conditioning,
                guidance,
                self._progress(on_step, params.steps, plan.total, height, width),
                kept_part(self, start, HIRES_PASS, plan.keep, width, height),
            )
            passes[HIRES_PASS] = latents

        # 6. decode
        meta = self._metadata(params, width, height, guidance)
        images = self.decode(latents, height, width)
        return finished_renders(images, plan.seeds, passes, meta, start, self.vae_scale_factor)

    def _metadata(
        self, params: RenderParams, width: int, height: int, guidance: torch.Tensor | None
    ) -> dict[str, object]:
        # FLUX takes neither a negative prompt nor a cfg scale: record what was used instead.
        used = params.model_dump(exclude={"cfg", "negative_prompt"})
        return {
            **used,
            "guidance": None if guidance is None else float(guidance[0]),
            "model": self.model_name,
            "family": "flux",
            "sampler": SAMPLER_NAME,
            "output_width": width,
            "output_height": height,
            "regional": self.schedule.metadata() if self.regional else None,
        }
