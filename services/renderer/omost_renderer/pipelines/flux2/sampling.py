"""FLUX.2's flow-matching shift (schedule: ``flow_match.flow_sigmas``; loop: ``euler_steps``).

FLUX.2 uses diffusers' ``FlowMatchEulerDiscreteScheduler`` like FLUX.1, with sigmas
``linspace(1, 1/n, n)`` shifted by an empirical ``mu`` that depends on the image's token count
*and* the number of steps (diffusers' ``compute_empirical_mu``, not FLUX.1's linear shift). An
img2img start (the colour sketch, the hires pass, an init image) follows the renderer's rule for
every family: a schedule of ``int(steps / strength)`` levels of which the last ``steps`` run.
"""

from __future__ import annotations

from typing import Any

import torch

from omost_renderer.pipelines.flow_match import flow_sigmas

#: FLUX.2 klein's scheduler config (diffusers layout): dynamic, exponential time shift.
FLUX2_SCHEDULER: dict[str, Any] = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "time_shift_type": "exponential",
    "use_dynamic_shifting": True,
}


def empirical_mu(image_tokens: int, steps: int) -> float:
    """The ``compute_empirical_mu`` of diffusers' FLUX.2: the shift for a token count and steps.

    Args:
        image_tokens: Image tokens of the latent.
        steps: Levels of the schedule.

    Returns:
        ``mu`` for ``set_timesteps``.
    """
    a1, b1 = 8.73809524e-05, 1.89833333
    a2, b2 = 0.00016927, 0.45666666
    if image_tokens > 4300:
        return float(a2 * image_tokens + b2)
    m_200 = a2 * image_tokens + b2
    m_10 = a1 * image_tokens + b1
    slope = (m_200 - m_10) / 190.0
    return float(slope * steps + m_200 - 200.0 * slope)


def flux2_sigmas(
    steps: int, strength: float, image_tokens: int, scheduler_config: dict[str, Any]
) -> torch.Tensor:
    """The noise levels of one FLUX.2 sampling run, from diffusers' scheduler.

    Args:
        steps: Steps that run.
        strength: 1.0 from pure noise; below, the last ``steps`` of ``int(steps / strength)``.
        image_tokens: Image tokens (for the shift).
        scheduler_config: A ``FlowMatchEulerDiscreteScheduler`` config.

    Returns:
        float32 (steps + 1,) descending noise levels ending with 0.
    """
    return flow_sigmas(steps, strength, image_tokens, scheduler_config, shift=empirical_mu)
