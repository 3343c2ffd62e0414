"""Omost's regional prompts on FLUX.2 klein as one readable pipeline.

``OmostFlux2Pipeline.render_steps`` turns a ``Canvas`` into images in numbered steps, as a
generator of model calls (``step_batch``); ``render`` drives it alone:

1. check the inputs, and the parameters this model does not take (``family_params``); plan the
   passes, seeds and start strength (``render_plan``);
2. encode the canvas: every region's Qwen3 states concatenated, each region's positions from 0
   (``encoding``), and the joint attention mask of its regions (``regional_schedule``); for
   klein base (not step-distilled) also the negative prompt, for classifier-free guidance;
3. prepare the starting latents: noise from CPU generators in the stock pipeline's patchified
   shape (a seed gives the same image on any device), optionally on top of the blurred colour
   sketch (or an init image) by flow-matching interpolation, an edit's kept part blended in
   (``sketch_start``, ``packed_start``);
4. denoise with flow-matching Euler on FLUX.2's schedule (``sampling``, ``flow_match``), yielding
   one ``DenoiseCall`` per step and reporting it (``step_progress``); the regional mask reaches
   the attention processors (``attention_processor``) through ``joint_attention_kwargs`` in the
   first ``regional_steps`` steps, at every ``regional_blocks``-th block, blended with an
   unmasked pass by ``base_ratio``;
5. the hires fix when ``hires_scale > 1.05`` (Omost's rule): decode, LANCZOS upscale, encode,
   denoise again from ``hires_denoise``;
6. decode with the VAE (``vae_codec``: per image, tiled above a size).

``denoise_batch`` evaluates the calls of several renders in one transformer call
(``transformer_steps``) when they share a key: the token grid, each region's text length (the
text positions depend on it), the negative prompt's length and whether the mask applies at this
step.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import torch
from omost_schema import Canvas
from omost_schema.occlusion import region_conditions
from PIL import Image

from omost_renderer.pipelines.family_params import FamilyParams, check_family_params, is_set
from omost_renderer.pipelines.flow_match import euler_steps, model_calls
from omost_renderer.pipelines.flux2.attention_processor import install_regional_flux2_processors
from omost_renderer.pipelines.flux2.encoding import (
    QWEN_MAX_TOKENS,
    Flux2Prompt,
    Flux2TextEncoder,
    encode_canvas,
    encode_text,
)
from omost_renderer.pipelines.flux2.latents import (
    LatentStats,
    UnitScaleVae,
    image_positions,
    noise_tokens,
)
from omost_renderer.pipelines.flux2.sampling import FLUX2_SCHEDULER, flux2_sigmas
from omost_renderer.pipelines.flux2.transformer_steps import (
    FAMILY,
    Flux2Conditioning,
    Flux2TransformerSteps,
)
from omost_renderer.pipelines.packed_latents import check_packed_size, token_grid
from omost_renderer.pipelines.packed_start import (
    KeptPart,
    kept_part,
    kept_tokens,
    pass_start,
    resized_pixels,
)
from omost_renderer.pipelines.regional_schedule import RegionalSchedule
from omost_renderer.pipelines.render_plan import render_plan
from omost_renderer.pipelines.render_start import (
    BASE_PASS,
    HIRES_PASS,
    RenderStart,
    finished_renders,
)
from omost_renderer.pipelines.rendering import RenderedImage, RenderParams, StepCallback
from omost_renderer.pipelines.sketch_start import sketch_start_pixels
from omost_renderer.pipelines.step_batch import DenoiseCall, RenderSteps, render_alone
from omost_renderer.pipelines.step_progress import StepProgress
from omost_renderer.pipelines.text_cache import DEFAULT_TEXT_CACHE_BYTES, TextEncodingCache
from omost_renderer.pipelines.vae_codec import VaeCodec

#: One denoising pass as a generator of model calls; its value is the pass's final tokens.
PassSteps = Generator[DenoiseCall, torch.Tensor, torch.Tensor]
SAMPLER_NAME = "flow-match Euler"
#: klein base's guidance scale when a request leaves ``cfg`` unset (diffusers' default).
DEFAULT_CFG = 4.0
#: klein base's negative prompt when a request leaves it unset (the stock pipeline's).
DEFAULT_NEGATIVE = ""


class OmostFlux2Pipeline:
    """FLUX.2 klein with Omost's regional prompts; implements ``CanvasRenderer`` and batching.

    Args:
        transformer: A diffusers ``Flux2Transformer2DModel`` (without guidance embedding).
        vae: A diffusers ``AutoencoderKLFlux2``.
        encoder: The Qwen tokenizer and text encoder.
        scheduler_config: The model's ``FlowMatchEulerDiscreteScheduler`` config.
        is_distilled: Step-distilled (klein: no guidance) or base (classifier-free guidance).
        model_name: Reported in each image's metadata.
        schedule: Where the regional mask applies.
        preview_every: A preview image every this many steps (and at the last).
        max_region_tokens: Qwen tokens of one region at most (the stock 512 by default); the
            negative prompt has the same bound.
        regional: ``False`` keeps diffusers' stock processors (a reference for tests).
        text_cache_bytes: Bound of the cache of encoded region texts (``text_cache``); 0 off.
    """

    #: Renders from a ``RenderStart`` (edits, init images).
    supports_start = True

    def __init__(
        self,
        transformer: Any,
        vae: Any,
        encoder: Flux2TextEncoder,
        *,
        scheduler_config: dict[str, Any] | None = None,
        is_distilled: bool = True,
        model_name: str = FAMILY,
        schedule: RegionalSchedule | None = None,
        preview_every: int = 5,
        max_region_tokens: int = QWEN_MAX_TOKENS,
        regional: bool = True,
        text_cache_bytes: int = DEFAULT_TEXT_CACHE_BYTES,
    ) -> None:
        if transformer.config.guidance_embeds:
            raise ValueError(
                "this FLUX.2 transformer embeds distilled guidance (FLUX.2 dev); only klein"
                " (Flux2KleinPipeline) is supported"
            )
        if not 1 <= max_region_tokens <= QWEN_MAX_TOKENS:
            raise ValueError(f"max_region_tokens must be within 1..{QWEN_MAX_TOKENS}")
        self.transformer = transformer
        self.vae = vae
        self.codec = VaeCodec(UnitScaleVae(vae))
        self.stats = LatentStats.of(vae)
        self.encoder = encoder
        self.scheduler_config = dict(scheduler_config or FLUX2_SCHEDULER)
        self.is_distilled = is_distilled
        self.model_name = model_name
        self.schedule = schedule or RegionalSchedule()
        self.preview_every = preview_every
        self.max_region_tokens = max_region_tokens
        self.regional = regional
        #: Encoded region texts by model and exact ids (the worker reports its counters).
        self.text_cache = TextEncodingCache(text_cache_bytes)
        #: The transformer's model calls, alone or batched across jobs.
        self.transformer_steps = Flux2TransformerSteps(transformer, self.schedule, regional)
        if regional:
            # Once: the processors hold their block index only, never a render's state.
            install_regional_flux2_processors(transformer)
        self.vae_scale_factor = self.codec.scale_factor

    @property
    def device(self) -> torch.device:
        """Where the transformer runs."""
        return self.transformer.device  # type: ignore[no-any-return]

    @property
    def family_params(self) -> FamilyParams:
        """What the model takes: distilled klein no guidance or negative prompt, klein base both."""
        guided = not self.is_distilled
        return FamilyParams(
            family=FAMILY, cfg="cfg" if guided else None, negative_prompt=guided, hires=True
        )

    # -- 1. inputs ---------------------------------------------------------------------------
    def check_inputs(self, params: RenderParams) -> None:
        """Refuse sizes the token grid cannot hold and parameters this model does not take.

        Raises:
            ValueError: When width or height is not a multiple of 16 (VAE 8x, 2x2 patches).
            UnsupportedParamError: ``cfg`` or ``negative_prompt`` set for a distilled model.
        """
        check_packed_size(params.width, params.height, self.vae_scale_factor)
        check_family_params(self.family_params, params)

    # -- 2. conditioning ---------------------------------------------------------------------
    def _cfg(self, params: RenderParams) -> float:
        if self.is_distilled:
            return 1.0
        return params.cfg if is_set(params, "cfg") else DEFAULT_CFG

    def condition(
        self, canvas: Canvas, params: RenderParams, rows: int, cols: int
    ) -> Flux2Conditioning:
        """Encode the canvas (and the negative prompt when guidance runs) for a token grid.

        ``params.mask_mode="occlusion"`` removes nearer boxes from farther regions' masks
        (``omost_schema.occlusion``), as the other families do.
        """
        conditions = region_conditions(canvas, params.mask_mode)
        prompt = encode_canvas(self.encoder, conditions, self.max_region_tokens,
                               self.text_cache, self.model_name)  # fmt: skip
        dtype = self.transformer.dtype
        prompt = Flux2Prompt(
            prompt.embeds.to(self.device, dtype),
            prompt.token_region,
            prompt.masks,
            prompt.text_ids.to(self.device),
        )
        cfg = self._cfg(params)
        negative = None
        if cfg > 1.0:
            text = params.negative_prompt if is_set(params, "negative_prompt") else DEFAULT_NEGATIVE
            negative = encode_text(
                self.encoder, text, self.max_region_tokens, self.text_cache, self.model_name
            )
            negative = negative.to(self.device, dtype)
        return self.conditioning_at(prompt, rows, cols, negative, cfg)

    def conditioning_at(
        self,
        prompt: Flux2Prompt,
        rows: int,
        cols: int,
        negative: torch.Tensor | None,
        cfg: float,
    ) -> Flux2Conditioning:
        """An encoded prompt's conditioning for a token grid: its mask and image positions.

        The hires pass calls this with the base pass's prompt, so the text is encoded once.
        """
        mask = None
        if self.regional:
            mask = self.schedule.joint_bias(prompt.token_region, prompt.masks, rows, cols,
                                            self.transformer.dtype, self.device)  # fmt: skip
        return Flux2Conditioning(
            prompt=prompt,
            mask=mask,
            image_ids=image_positions(rows, cols).to(self.device),
            rows=rows,
            cols=cols,
            negative=negative,
            cfg=cfg,
        )

    # -- 3. latents ----------------------------------------------------------------------------
    def noise(self, generators: list[torch.Generator], height: int, width: int) -> torch.Tensor:
        """Noise tokens (k, N, F) of a ``height`` x ``width`` image, one row per generator."""
        rows, cols = token_grid(height, width, self.vae_scale_factor)
        features = self.transformer.config.in_channels
        return noise_tokens(generators, features, rows, cols).to(self.device)

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE-encode pixels in [-1, 1], (k, 3, H, W), to normalised tokens, float32 (k, N, F)."""
        return self.stats.to_tokens(self.codec.encode(pixels)).to(self.device)

    def decode(self, tokens: torch.Tensor, height: int, width: int) -> list[Image.Image]:
        """Decode the tokens of ``height`` x ``width`` images to RGB images."""
        size = (height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = self.stats.to_latents(tokens.float().cpu(), *size)
        return [Image.fromarray(array) for array in self.codec.decode(latents)]

    # -- 4. denoising --------------------------------------------------------------------------
    def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
        """Evaluate the velocity of calls that share a key in one transformer call.

        Rows are every job's images in order (see ``Flux2TransformerSteps.denoise_batch``).

        Args:
            calls: ``DenoiseCall``s of this pipeline with one key.

        Returns:
            Each call's velocity, float32 (k, N, F), in order.
        """
        return self.transformer_steps.denoise_batch(calls)

    def _run(
        self,
        start: torch.Tensor | None,
        noise: torch.Tensor,
        steps: int,
        strength: float,
        conditioning: Flux2Conditioning,
        progress: StepProgress,
        kept: KeptPart | None = None,
    ) -> PassSteps:
        """One pass from ``start`` (or noise) as a generator of model calls; its final tokens."""
        sigmas = flux2_sigmas(steps, strength, noise.shape[1], self.scheduler_config)
        sigmas = sigmas.to(self.device)
        latents, blend = pass_start(start, noise, sigmas[0], steps, kept)
        euler = euler_steps(latents, sigmas.tolist(), progress, blend)
        calls = self.transformer_steps.call
        return (yield from model_calls(euler, lambda step: calls(step, conditioning)))

    def _progress(
        self, on_step: StepCallback | None, offset: int, total: int, height: int, width: int
    ) -> StepProgress:
        size = (height // self.vae_scale_factor, width // self.vae_scale_factor)

        def preview(tokens: torch.Tensor) -> Image.Image:
            return self.stats.preview(tokens, *size)

        return StepProgress(on_step, offset, total, self.preview_every, preview)

    # -- the whole render ----------------------------------------------------------------------
    def render_steps(
        self,
        canvas: Canvas,
        params: RenderParams,
        on_step: StepCallback | None = None,
        *,
        start: RenderStart | None = None,
    ) -> RenderSteps:
        """The render of ``canvas`` as a generator of model calls (``step_batch``).

        Args:
            canvas: A validated canvas.
            params: Size, steps, guidance, seed, hires fix and sketch start.
            on_step: Called after every denoising step with an occasional preview; an exception
                it raises stops the render and propagates.
            start: An edit's base render or an init image (``render_start``); outside its
                repaint area the flow-matching blend keeps it.

        Returns:
            One image per seed (``seed, seed + 1, ...``), with the parameters that reproduce it
            and the final tokens of each pass.
        """
        # 1. inputs
        self.check_inputs(params)
        plan = render_plan(params, start)
        height, width = params.height, params.width

        # 2. text and mask
        conditioning = self.condition(
            canvas, params, *token_grid(height, width, self.vae_scale_factor)
        )

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
            self._progress(on_step, 0, plan.total, height, width),
            kept_part(self, start, BASE_PASS, plan.keep, width, height),
        )
        passes = {BASE_PASS: latents}

        # 5. hires fix
        if plan.hires:
            images = self.decode(latents, height, width)
            width, height = plan.hires
            init = self.encode_pixels(resized_pixels(images, width, height))
            conditioning = self.conditioning_at(
                conditioning.prompt,
                *token_grid(height, width, self.vae_scale_factor),
                conditioning.negative,
                conditioning.cfg,
            )
            latents = yield from self._run(
                init,
                self.noise(plan.generators, height, width),
                params.hires_steps,
                params.hires_denoise,
                conditioning,
                self._progress(on_step, params.steps, plan.total, height, width),
                kept_part(self, start, HIRES_PASS, plan.keep, width, height),
            )
            passes[HIRES_PASS] = latents

        # 6. decode
        meta = self._metadata(params, width, height, conditioning)
        images = self.decode(latents, height, width)
        return finished_renders(images, plan.seeds, passes, meta, start, self.vae_scale_factor)

    def render(
        self,
        canvas: Canvas,
        params: RenderParams,
        on_step: StepCallback | None = None,
        *,
        start: RenderStart | None = None,
    ) -> list[RenderedImage]:
        """Render ``params.num_images`` images of ``canvas`` alone (see :meth:`render_steps`)."""
        return render_alone(self, self.render_steps(canvas, params, on_step, start=start))

    def _metadata(
        self, params: RenderParams, width: int, height: int, conditioning: Flux2Conditioning
    ) -> dict[str, object]:
        guided = conditioning.negative is not None
        used = params.model_dump(exclude={"cfg", "negative_prompt"})
        negative = params.negative_prompt if is_set(params, "negative_prompt") else DEFAULT_NEGATIVE
        return {
            **used,
            # What was used: no guidance for klein (distilled), the family's defaults for base.
            "cfg": conditioning.cfg if guided else None,
            "negative_prompt": negative if guided else None,
            "model": self.model_name,
            "family": FAMILY,
            "sampler": SAMPLER_NAME,
            "output_width": width,
            "output_height": height,
            "regional": self.schedule.metadata() if self.regional else None,
        }
