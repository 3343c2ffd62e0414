"""Omost's sampler: DPM++ 2M on Karras sigmas over SD's scaled-linear schedule (k-diffusion style).

The model is wrapped as a denoiser ``D(x, sigma)``: the UNet sees ``x / sqrt(sigma^2 + 1)`` and the
timestep whose log-sigma is nearest, predicts eps, and ``D = x - eps * sigma``.

The schedule and the timestep lookup are float32, as in Omost (and k-diffusion): the cumulative
alphas are a float64 product stored as float32, the Karras ramp is a float32 ``linspace`` and the
lookup compares float32 log-sigmas. Computed in float64 instead, the lookup lands one timestep away
for some step counts (575 instead of 576), so the UNet would see a different timestep than in
Omost. The solver's own step arithmetic (ratios of sigmas) runs in float64 on those float32 sigmas.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

BETA_START = 0.00085
BETA_END = 0.012
TRAIN_STEPS = 1000
#: Longest schedule ``omost_sigmas`` builds (``int(steps / strength)``): never more noise levels
#: than training timesteps, so no strength can ask for millions of them.
MAX_SCHEDULE = TRAIN_STEPS
KARRAS_RHO = 7.0

#: ``denoise(x, sigma) -> x0 estimate``.
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Called after step ``i`` (0-based) with the new latent and the step's denoised estimate (x0);
#: raising stops sampling.
SamplerCallback = Callable[[int, torch.Tensor, torch.Tensor], None]
#: ``blend(i, x, sigma_next) -> x``: rewrites the latent after step ``i`` (an inpainting blend).
SamplerBlend = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def training_sigmas() -> torch.Tensor:
    """Sigmas of SD's 1000 training timesteps (scaled-linear betas), float32, ascending.

    Returns:
        float32 (1000,) from about 0.0292 to 14.6146.
    """
    betas = torch.linspace(BETA_START**0.5, BETA_END**0.5, TRAIN_STEPS, dtype=torch.float64) ** 2
    # The product is taken in float64 and stored as float32; the sigmas follow in float32.
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0).to(torch.float32)
    return ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5


def karras_sigmas(
    n: int, sigma_min: float, sigma_max: float, rho: float = KARRAS_RHO
) -> torch.Tensor:
    """Karras et al. (2022) noise levels, with a final 0 appended.

    Args:
        n: Number of sampling steps.
        sigma_min: Smallest non-zero sigma.
        sigma_max: Largest sigma.
        rho: Schedule curvature.

    Returns:
        float32 (n + 1,), descending, last element 0.
    """
    ramp = torch.linspace(0.0, 1.0, n, dtype=torch.float32)
    # The roots are float32 too: float32 tensors raised to a Python float, as k-diffusion does.
    min_inv = torch.tensor(sigma_min, dtype=torch.float32) ** (1.0 / rho)
    max_inv = torch.tensor(sigma_max, dtype=torch.float32) ** (1.0 / rho)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def omost_sigmas(steps: int, strength: float = 1.0) -> torch.Tensor:
    """Omost's schedule for ``steps`` steps at img2img ``strength``.

    Builds ``int(steps / strength)`` Karras sigmas over the training range and keeps the last
    ``steps + 1`` (strength 1.0 is the full schedule).

    Args:
        steps: Denoising steps to run.
        strength: Share of the schedule to run, in (0, 1].

    Returns:
        float32 (steps + 1,), descending to 0.
    """
    if steps < 1 or not 0.0 < strength <= 1.0:
        raise ValueError(f"need steps >= 1 and 0 < strength <= 1, got {steps}, {strength}")
    built = int(steps / strength)
    if built > MAX_SCHEDULE:
        raise ValueError(
            f"{steps} steps at strength {strength} need {built} noise levels;"
            f" the limit is {MAX_SCHEDULE}"
        )
    train = training_sigmas()
    full = karras_sigmas(built, float(train[0]), float(train[-1]))
    return full[-(steps + 1) :]


def sigma_to_timestep(sigma: torch.Tensor, train_sigmas: torch.Tensor) -> torch.Tensor:
    """Training timestep whose log-sigma is nearest to ``log(sigma)`` (Omost's rule, no lerp).

    Args:
        sigma: Noise levels, any shape (compared in float32).
        train_sigmas: (1000,) from :func:`training_sigmas`.

    Returns:
        int64 timesteps, shape of ``sigma``.
    """
    log_train = train_sigmas.float().log().to(sigma.device)
    dists = sigma.float().log().reshape(1, -1) - log_train[:, None]
    return dists.abs().argmin(dim=0).reshape(sigma.shape)


def sample_dpmpp_2m(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    callback: SamplerCallback | None = None,
    blend: SamplerBlend | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M), the deterministic multistep sampler of k-diffusion.

    Args:
        denoise: The denoiser ``D(x, sigma)``.
        x: Starting latent, already at noise level ``sigmas[0]``.
        sigmas: Descending noise levels ending with 0.
        callback: Called after every step with the new latent and the step's denoised estimate.
        blend: Rewrites the latent after every step, before ``callback`` (the masked-inpainting
            blend of an edit); the solver's history keeps the model's own denoised estimates.

    Returns:
        The final latent.
    """
    old_denoised: torch.Tensor | None = None
    # The sigmas' values are the schedule's (float32); the ratios between them are taken in
    # float64 so that the solver adds no rounding of its own.
    sigmas = sigmas.double()
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma.to(torch.float32))
        if sigma_next == 0:
            # Last step to sigma 0: the solution is the denoised estimate itself.
            x = denoised
        else:
            t, t_next = -sigma.log(), -sigma_next.log()
            h = t_next - t
            ratio = float(sigma_next / sigma)  # exp(-h)
            step = float(-torch.expm1(-h))  # 1 - exp(-h)
            if old_denoised is None:
                target = denoised
            else:
                r = float((t - (-sigmas[i - 1].log())) / h)
                target = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = ratio * x + step * target
        old_denoised = denoised
        if blend is not None:
            x = blend(i, x, sigma_next.to(torch.float32))
        if callback is not None:
            callback(i, x, denoised)
    return x
