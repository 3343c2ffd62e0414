from __future__ import annotations

import numpy as np
import pytest
import torch
from omost_renderer.pipelines.sdxl.sampling import (
    karras_sigmas,
    omost_sigmas,
    sample_dpmpp_2m,
    sigma_to_timestep,
    training_sigmas,
)


def test_training_sigmas_span_the_sd_range() -> None:
    sigmas = training_sigmas()
    assert sigmas.shape == (1000,)
    assert float(sigmas[0]) == pytest.approx(0.0292, abs=1e-4)
    assert float(sigmas[-1]) == pytest.approx(14.6146, abs=1e-4)


def test_omost_sigmas_full_schedule_is_karras_with_trailing_zero() -> None:
    sigmas = omost_sigmas(25)
    assert sigmas.shape == (26,)
    assert float(sigmas[0]) == pytest.approx(14.6146, abs=1e-4)
    assert float(sigmas[-2]) == pytest.approx(0.0292, abs=1e-4)
    assert float(sigmas[-1]) == 0.0
    assert bool((sigmas[:-1] > sigmas[1:]).all())
    # rho = 7: the 7th roots are evenly spaced.
    roots = sigmas[:-1].double() ** (1 / 7)
    torch.testing.assert_close(roots.diff(), roots.diff()[:1].expand(24), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("steps", "strength", "built"), [(25, 0.95, 26), (20, 0.4, 50), (10, 0.3, 33)]
)
def test_img2img_keeps_the_tail_of_int_steps_over_strength(
    steps: int, strength: float, built: int
) -> None:
    assert int(steps / strength) == built
    train = training_sigmas()
    full = karras_sigmas(built, float(train[0]), float(train[-1]))
    sigmas = omost_sigmas(steps, strength)
    assert sigmas.shape == (steps + 1,)
    torch.testing.assert_close(sigmas, full[-(steps + 1) :])
    assert float(sigmas[0]) < float(train[-1])


def test_omost_sigmas_rejects_bad_strength() -> None:
    with pytest.raises(ValueError, match="strength"):
        omost_sigmas(10, 0.0)


def test_sigma_to_timestep_picks_the_nearest_log_sigma() -> None:
    train = training_sigmas()
    assert sigma_to_timestep(train[[0, 500, 999]], train).tolist() == [0, 500, 999]
    between = (train[10].log() * 0.8 + train[11].log() * 0.2).exp()
    assert int(sigma_to_timestep(between[None], train)[0]) == 10


def test_dpmpp_2m_is_exact_for_a_constant_denoiser() -> None:
    target = torch.full((1, 4, 2, 2), 0.5, dtype=torch.float64)
    x = torch.randn(1, 4, 2, 2, dtype=torch.float64) * 14.6

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return target

    out = sample_dpmpp_2m(denoise, x, omost_sigmas(5))
    torch.testing.assert_close(out, target)


def test_dpmpp_2m_solves_the_gaussian_probability_flow_ode() -> None:
    # Data x0 ~ N(mu, s^2): the ideal denoiser is linear, and along the ODE x - mu grows like
    # sqrt(s^2 + sigma^2). The last step jumps from sigma_min to the denoised estimate.
    mu, s = 0.3, 0.5
    x_t = torch.linspace(-30, 30, 11, dtype=torch.float64)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma.double()
        return mu + s**2 / (s**2 + sigma**2) * (x - mu)

    def error(steps: int) -> float:
        sigmas = omost_sigmas(steps)
        top, low = float(sigmas[0]), float(sigmas[-2])
        at_low = mu + ((s**2 + low**2) / (s**2 + top**2)) ** 0.5 * (x_t - mu)
        exact = denoise(at_low, torch.tensor(low))
        return float((sample_dpmpp_2m(denoise, x_t.clone(), sigmas) - exact).abs().max())

    assert error(25) < 1e-2
    # Second order: four times the steps, well over four times less error.
    assert error(100) < error(25) / 6


def test_dpmpp_2m_reports_every_step_and_stops_on_error() -> None:
    seen: list[int] = []

    def callback(i: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        seen.append(i)
        if i == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sample_dpmpp_2m(lambda x, s: x * 0, torch.ones(1), omost_sigmas(10), callback)
    assert seen == [0, 1, 2]


def test_dpmpp_2m_reports_the_denoised_estimate_of_each_step() -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    x = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    sigmas = omost_sigmas(4)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x * 0.5 + sigma.double()

    def callback(i: int, x_next: torch.Tensor, denoised: torch.Tensor) -> None:
        seen.append((x_next.clone(), denoised.clone()))

    sample_dpmpp_2m(denoise, x, sigmas, callback)
    # Each step's estimate is the denoiser's output at that step's input and sigma.
    inputs = [x] + [after for after, _ in seen[:-1]]
    for i, (before, (_, denoised)) in enumerate(zip(inputs, seen, strict=True)):
        torch.testing.assert_close(denoised, denoise(before, sigmas[i].float()))


def _omost_schedule(n: int) -> torch.Tensor:
    """Omost's (k-diffusion's) float32 Karras schedule over SD's training sigmas, with its zero."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.tensor(np.cumprod((1.0 - betas).numpy()), dtype=torch.float32)
    train = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    ramp = torch.linspace(0, 1, n)
    min_inv, max_inv = train[0] ** (1 / 7.0), train[-1] ** (1 / 7.0)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** 7.0
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def _omost_timesteps(steps: int, strength: float) -> list[int]:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.tensor(np.cumprod((1.0 - betas).numpy()), dtype=torch.float32)
    log_sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).log()
    sigmas = _omost_schedule(int(steps / strength))[-(steps + 1) :]
    dists = sigmas[:-1].log() - log_sigmas[:, None]
    return dists.abs().argmin(dim=0).tolist()  # type: ignore[no-any-return]


_STRENGTHS = (1.0, 0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def test_schedule_and_timesteps_equal_omosts_float32_for_every_step_count() -> None:
    train = training_sigmas()
    for steps in range(1, 101):
        for strength in _STRENGTHS:
            sigmas = omost_sigmas(steps, strength)
            expected = _omost_schedule(int(steps / strength))[-(steps + 1) :]
            assert torch.equal(sigmas, expected), (steps, strength)
            timesteps = sigma_to_timestep(sigmas[:-1], train).tolist()
            assert timesteps == _omost_timesteps(steps, strength), (steps, strength)


@pytest.mark.parametrize(
    ("steps", "float64", "omost"), [(18, 575, 576), (35, 575, 576), (43, 341, 342)]
)
def test_timestep_lookup_lands_where_omost_does(steps: int, float64: int, omost: int) -> None:
    # Computed in float64, these full schedules put one step on the neighbouring timestep.
    timesteps = sigma_to_timestep(omost_sigmas(steps)[:-1], training_sigmas()).tolist()
    assert omost in timesteps
    assert float64 not in timesteps
