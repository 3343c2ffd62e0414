"""Flow-matching sampling for MM-DiT families: diffusers' schedule, an Euler loop, img2img starts.

A flow-matching model predicts the velocity ``v = noise - x0`` of ``x_t = (1 - s) x0 + s noise``
at noise level ``s`` (sigma). The schedule is the one diffusers' ``FlowMatchEulerDiscreteScheduler``
builds for FLUX (``linspace(1, 1/n, n)``, shifted by ``mu`` from the image's token count when the
model's scheduler config asks for dynamic shifting); the Euler step ``x += (s_next - s) v`` is the
scheduler's own step written out in float32, so the loop keeps no scheduler state.

An img2img start (the colour sketch, the hires pass) follows Omost's SDXL rule: a schedule of
``int(steps / strength)`` levels of which the last ``steps`` run, from
``x = (1 - s0) x0 + s0 noise`` (the scheduler's ``scale_noise``).

The loop has a generator form, :func:`euler_steps`, for step-level batching (``step_batch``): it
yields a :class:`FlowStep` (step index, latents, noise level as a Python float) whenever it needs
the model's velocity and is sent the velocity back. Every decision of the loop is made on the host
from the schedule's floats (``flow_sigmas(...).tolist()``, computed once per run), so a step reads
nothing back from the device. :func:`sample_euler` drives it with a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from omost_renderer.pipelines.sdxl.sampling import MAX_SCHEDULE

#: A family's model call for one step (``step_batch.DenoiseCall``).
Call = TypeVar("Call")
#: ``velocity(step, x, sigma) -> v`` (``step`` 0-based within the run).
Velocity = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
#: Called after step ``i`` (0-based) with the new latent and the step's x0 estimate.
FlowCallback = Callable[[int, torch.Tensor, torch.Tensor], None]
#: ``shift(image_tokens, levels) -> mu``: a schedule's dynamic shift (``levels``: its length).
Shift = Callable[[int, int], float]
#: ``blend(i, x, sigma_next) -> x``: rewrites the latents after step ``i`` (``sigma_next`` a float).
FlowBlend = Callable[[int, torch.Tensor, float], torch.Tensor]

#: diffusers' FLUX.1-dev scheduler config (dynamic shifting by image size).
FLUX_DEV_SCHEDULER: dict[str, Any] = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}


def shift_mu(image_tokens: int, config: Any) -> float:
    """Diffusers' ``calculate_shift``: ``mu`` linear in the image's token count.

    Args:
        image_tokens: Packed image tokens of the latent.
        config: The scheduler's config (``base_image_seq_len``, ``max_image_seq_len``,
            ``base_shift``, ``max_shift``).

    Returns:
        The shift exponent for ``set_timesteps(mu=...)``.
    """
    base_len = config.get("base_image_seq_len", 256)
    max_len = config.get("max_image_seq_len", 4096)
    base, top = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (top - base) / (max_len - base_len)
    return float(image_tokens * slope + base - slope * base_len)


def flow_sigmas(
    steps: int,
    strength: float,
    image_tokens: int,
    scheduler_config: dict[str, Any],
    shift: Shift | None = None,
) -> torch.Tensor:
    """The noise levels of one sampling run, from diffusers' scheduler.

    Args:
        steps: Steps that run.
        strength: 1.0 from pure noise; below, the last ``steps`` of ``int(steps / strength)``.
        image_tokens: Packed image tokens (for dynamic shifting).
        scheduler_config: A ``FlowMatchEulerDiscreteScheduler`` config.
        shift: ``mu`` for dynamic shifting; FLUX.1's linear :func:`shift_mu` by default
            (FLUX.2 passes its empirical shift, which also depends on the levels).

    Returns:
        float32 (steps + 1,) descending noise levels ending with 0.
    """
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)  # type: ignore[no-untyped-call]
    total = steps if strength >= 1.0 else min(int(steps / strength), MAX_SCHEDULE)
    total = max(total, steps)
    options: dict[str, Any] = {}
    if scheduler.config.get("use_dynamic_shifting", False):
        if shift is None:
            options["mu"] = shift_mu(image_tokens, scheduler.config)
        else:
            options["mu"] = shift(image_tokens, total)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / total, total).tolist(), **options)
    sigmas: torch.Tensor = scheduler.sigmas.float()
    return sigmas[total - steps :]


def noised_start(x0: torch.Tensor | None, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``(1 - s) x0 + s noise``: the start of a run at noise level ``sigma`` (pure noise at 1).

    Args:
        x0: The clean start (the encoded sketch), or ``None`` for pure noise.
        noise: Gaussian noise of the latent's shape.
        sigma: The first noise level.

    Returns:
        The starting latent, float32.
    """
    if x0 is None:
        return noise * sigma
    return (1 - sigma) * x0.float() + sigma * noise


@dataclass(frozen=True)
class FlowStep:
    """One velocity evaluation the Euler loop asks for.

    Attributes:
        index: The step, 0-based within the run (the regional schedule keys on it).
        x: float32 latents at noise level ``sigma``, e.g. (k, N, 4C) packed tokens.
        sigma: The noise level, a Python float (the schedule's float32 value).
    """

    index: int
    x: torch.Tensor
    sigma: float


#: The Euler loop as a generator: yields ``FlowStep``, is sent the velocity, returns the latents.
EulerSteps = Generator[FlowStep, torch.Tensor, torch.Tensor]


def euler_steps(
    latents: torch.Tensor,
    sigmas: Sequence[float],
    callback: FlowCallback | None = None,
    blend: FlowBlend | None = None,
) -> EulerSteps:
    """Flow-matching Euler as a generator: the caller evaluates the model for each step.

    Each step yields a :class:`FlowStep` and must be sent the velocity ``v`` at that step's
    latents and noise level (any float dtype, the shape of ``x``). The arithmetic is float32
    tensors times Python floats (the schedule's float32 values), the same numbers as the
    scheduler's own step; nothing is read back from the device.

    Args:
        latents: Starting latents at ``sigmas[0]`` (made float32).
        sigmas: Descending noise levels as floats (``flow_sigmas(...).tolist()``); ``len - 1``
            steps run.
        callback: Called after every step with the new latents and the step's x0 estimate;
            raising stops the loop (the exception leaves the generator).
        blend: Rewrites the latents after every step, before ``callback``.

    Returns:
        (as the generator's value) The final latents, float32.
    """
    x = latents.float()
    for index in range(len(sigmas) - 1):
        sigma, following = sigmas[index], sigmas[index + 1]
        v = (yield FlowStep(index, x, sigma)).float()
        denoised = x - sigma * v
        x = x + (following - sigma) * v
        if blend is not None:
            x = blend(index, x, following)
        if callback is not None:
            callback(index, x, denoised)
    return x


def model_calls(
    steps: EulerSteps, call: Callable[[FlowStep], Call]
) -> Generator[Call, torch.Tensor, torch.Tensor]:
    """The Euler loop's velocity requests as a family's model calls (``step_batch``).

    Each :class:`FlowStep` becomes ``call(step)`` (a ``DenoiseCall``); what the driver sends
    back is sent on to the loop as the step's velocity.

    Args:
        steps: A running :func:`euler_steps`.
        call: The family's model call for one step.

    Returns:
        (as the generator's value) The loop's final latents.
    """
    try:
        step = next(steps)
        while True:
            velocity = yield call(step)
            step = steps.send(velocity)
    except StopIteration as done:
        final: torch.Tensor = done.value
        return final


def sample_euler(
    velocity: Velocity,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    callback: FlowCallback | None = None,
    blend: FlowBlend | None = None,
) -> torch.Tensor:
    """Flow-matching Euler from ``latents`` at ``sigmas[0]`` down to ``sigmas[-1]``.

    Drives :func:`euler_steps` with ``velocity``.

    Args:
        velocity: The model's velocity prediction (``sigma`` as a 0-dim tensor of ``sigmas``).
        latents: float32 starting latents.
        sigmas: Descending noise levels (``flow_sigmas``).
        callback: Called after every step; raising stops sampling.
        blend: Rewrites the latents after every step, before ``callback`` (an edit's
            inpainting blend, ``pipelines.inpaint_blend``).

    Returns:
        The final latents, float32.
    """
    steps = euler_steps(latents, sigmas.float().tolist(), callback, blend)
    try:
        step = next(steps)
        while True:
            step = steps.send(velocity(step.index, step.x, sigmas[step.index]))
    except StopIteration as done:
        result: torch.Tensor = done.value
        return result
