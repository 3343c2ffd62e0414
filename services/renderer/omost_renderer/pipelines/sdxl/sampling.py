"""Omost's sampler: DPM++ 2M on Karras sigmas over SD's scaled-linear schedule (k-diffusion style).

The model is wrapped as a denoiser ``D(x, sigma)``: the UNet sees ``x / sqrt(sigma^2 + 1)`` and the
timestep whose log-sigma is nearest, predicts eps, and ``D = x - eps * sigma``.

The schedule and the timestep lookup are float32, as in Omost (and k-diffusion): the cumulative
alphas are a float64 product stored as float32, the Karras ramp is a float32 ``linspace`` and the
lookup compares float32 log-sigmas. Computed in float64 instead, the lookup lands one timestep away
for some step counts (575 instead of 576), so the UNet would see a different timestep than in
Omost. The solver's own step arithmetic (ratios of sigmas) runs in float64 on those float32 sigmas.

For step-level batching the sampler is a generator, :func:`dpmpp_2m_steps`: it yields a
:class:`SamplerStep` whenever it needs the denoiser and is sent the denoised estimate back. The
schedule is a :class:`Schedule` of Python floats computed once per run on the host (the sigmas,
the solver's coefficients, the UNet timesteps and input scales), so a step reads nothing back from
the device: no ``.item()`` and no comparison of a device tensor decides anything in the loop.
:func:`sample_dpmpp_2m` drives the generator with a callable and gives the same numbers as before.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

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
#: ``blend(i, x, sigma_next) -> x``: rewrites the latent after step ``i`` (an inpainting blend);
#: ``sigma_next`` is the schedule's float32 value as a Python float.
SamplerBlend = Callable[[int, torch.Tensor, float], torch.Tensor]


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


@dataclass(frozen=True)
class Schedule:
    """One DPM++ 2M run's numbers, as Python floats computed once on the host.

    Attributes:
        sigmas: The noise levels (float32 values), descending, ending with 0; ``len - 1`` steps.
        ratios: Per step, ``sigma_next / sigma`` (float64), the weight of ``x``.
        weights: Per step, ``1 - exp(-h)`` (float64), the weight of the target.
        history: Per step, ``1 / (2 r)`` of the second-order correction, or ``None`` where the
            step is first order (the first step) or the last step to sigma 0.
        timesteps: Per step, the training timestep nearest ``sigma`` (Omost's float32 lookup).
        input_scales: Per step, ``sqrt(sigma^2 + 1)`` in float32: the UNet sees ``x / scale``.
    """

    sigmas: list[float]
    ratios: list[float]
    weights: list[float]
    history: list[float | None]
    timesteps: list[int]
    input_scales: list[float]

    @property
    def steps(self) -> int:
        """Denoiser evaluations of the run."""
        return len(self.sigmas) - 1


def schedule_of(sigmas: torch.Tensor, train_sigmas: torch.Tensor | None = None) -> Schedule:
    """The host-side numbers of a run over ``sigmas`` (see :class:`Schedule`).

    The arithmetic is the solver's as it always was (0-dim float64 tensors on the CPU, element
    by element), so the coefficients are bit-identical to the loop's former on-device ones.

    Args:
        sigmas: Descending noise levels ending with 0 (``omost_sigmas``), any device.
        train_sigmas: (1000,) from :func:`training_sigmas` (built when not given).

    Returns:
        The run's schedule.
    """
    sigmas32 = sigmas.detach().to("cpu", torch.float32)
    wide = sigmas32.double()
    train = training_sigmas() if train_sigmas is None else train_sigmas.cpu()
    ratios: list[float] = []
    weights: list[float] = []
    history: list[float | None] = []
    for i in range(len(wide) - 1):
        sigma, sigma_next = wide[i], wide[i + 1]
        if float(sigma_next) == 0.0:
            # Last step to sigma 0: the solution is the denoised estimate itself.
            ratios.append(0.0)
            weights.append(1.0)
            history.append(None)
            continue
        t, t_next = -sigma.log(), -sigma_next.log()
        h = t_next - t
        ratios.append(float(sigma_next / sigma))  # exp(-h)
        weights.append(float(-torch.expm1(-h)))  # 1 - exp(-h)
        if i == 0:
            history.append(None)
        else:
            r = float((t - (-wide[i - 1].log())) / h)
            history.append(1 / (2 * r))
    levels = sigmas32[:-1]
    return Schedule(
        sigmas=sigmas32.tolist(),
        ratios=ratios,
        weights=weights,
        history=history,
        timesteps=sigma_to_timestep(levels, train).tolist() if len(levels) else [],
        input_scales=[float((s**2 + 1) ** 0.5) for s in levels],
    )


@dataclass(frozen=True)
class SamplerStep:
    """One denoiser evaluation the sampler asks for.

    Attributes:
        index: The step, 0-based within the run.
        x: The latent at noise level ``sigma`` (float32 (k, 4, h, w) in the pipeline).
        sigma: The noise level, a Python float (the schedule's float32 value).
    """

    index: int
    x: torch.Tensor
    sigma: float


#: DPM++ 2M as a generator: yields ``SamplerStep``, is sent ``D(x, sigma)``, returns the latent.
SamplerSteps = Generator[SamplerStep, torch.Tensor, torch.Tensor]


def dpmpp_2m_steps(
    x: torch.Tensor,
    schedule: Schedule,
    callback: SamplerCallback | None = None,
    blend: SamplerBlend | None = None,
) -> SamplerSteps:
    """DPM-Solver++(2M) as a generator: the caller evaluates the denoiser for each step.

    Each step yields a :class:`SamplerStep` and must be sent the denoised estimate (the shape and
    dtype of ``x``). The update is tensors times the schedule's Python floats: nothing is read
    back from the device and no tensor decides a branch.

    Args:
        x: Starting latent, already at noise level ``schedule.sigmas[0]``.
        schedule: The run's numbers (:func:`schedule_of`).
        callback: Called after every step with the new latent and the step's denoised
            estimate; raising stops the run (the exception leaves the generator).
        blend: Rewrites the latent after every step, before ``callback`` (the masked-inpainting
            blend of an edit); the solver's history keeps the model's own denoised estimates.

    Returns:
        (as the generator's value) The final latent.
    """
    old_denoised: torch.Tensor | None = None
    for i in range(schedule.steps):
        denoised = yield SamplerStep(i, x, schedule.sigmas[i])
        if schedule.sigmas[i + 1] == 0.0:
            x = denoised
        else:
            target = denoised
            correction = schedule.history[i]
            if correction is not None and old_denoised is not None:
                target = (1 + correction) * denoised - correction * old_denoised
            x = schedule.ratios[i] * x + schedule.weights[i] * target
        old_denoised = denoised
        if blend is not None:
            x = blend(i, x, schedule.sigmas[i + 1])
        if callback is not None:
            callback(i, x, denoised)
    return x


def sample_dpmpp_2m(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    callback: SamplerCallback | None = None,
    blend: SamplerBlend | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M), the deterministic multistep sampler of k-diffusion.

    Drives :func:`dpmpp_2m_steps` with ``denoise``.

    Args:
        denoise: The denoiser ``D(x, sigma)`` (``sigma`` a float32 0-dim tensor on the sigmas'
            device).
        x: Starting latent, already at noise level ``sigmas[0]``.
        sigmas: Descending noise levels ending with 0.
        callback: Called after every step with the new latent and the step's denoised estimate.
        blend: Rewrites the latent after every step, before ``callback``.

    Returns:
        The final latent.
    """
    levels = sigmas.to(torch.float32)
    steps = dpmpp_2m_steps(x, schedule_of(sigmas), callback, blend)
    try:
        step = next(steps)
        while True:
            step = steps.send(denoise(step.x, levels[step.index]))
    except StopIteration as done:
        result: torch.Tensor = done.value
        return result
