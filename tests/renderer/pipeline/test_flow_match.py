from __future__ import annotations

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from omost_renderer.pipelines.flow_match import (
    FLUX_DEV_SCHEDULER,
    FlowStep,
    euler_steps,
    flow_sigmas,
    model_calls,
    noised_start,
    sample_euler,
    shift_mu,
)


def test_shift_mu_is_diffusers_calculate_shift() -> None:
    for tokens in (16, 256, 1024, 4096):
        assert shift_mu(tokens, FLUX_DEV_SCHEDULER) == pytest.approx(calculate_shift(tokens))


def test_sigmas_are_diffusers_flux_schedule() -> None:
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(FLUX_DEV_SCHEDULER)  # type: ignore[no-untyped-call]
    scheduler.set_timesteps(sigmas=[1.0 - i / 4 for i in range(4)], mu=calculate_shift(1024))
    assert torch.equal(flow_sigmas(4, 1.0, 1024, FLUX_DEV_SCHEDULER), scheduler.sigmas.float())


def test_img2img_runs_the_last_steps_of_a_longer_schedule() -> None:
    full = flow_sigmas(8, 1.0, 256, FLUX_DEV_SCHEDULER)
    partial = flow_sigmas(4, 0.5, 256, FLUX_DEV_SCHEDULER)
    assert torch.equal(partial, full[4:])
    x0, noise = torch.ones(1, 2), torch.zeros(1, 2)
    assert torch.allclose(noised_start(x0, noise, torch.tensor(0.25)), torch.full((1, 2), 0.75))


def test_euler_follows_a_straight_flow_to_its_target() -> None:
    target, noise = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.5, 0.5]])
    sigmas = flow_sigmas(3, 1.0, 256, FLUX_DEV_SCHEDULER)
    seen: list[int] = []

    def velocity(step: int, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen.append(step)
        return noise - target

    out = sample_euler(velocity, noised_start(None, noise, sigmas[0]), sigmas, lambda i, x, d: None)
    assert torch.allclose(out, target, atol=1e-6)
    assert seen == [0, 1, 2]


def test_flux2_sigmas_are_diffusers_klein_schedule() -> None:
    # FLUX.2 shares the schedule and passes its empirical shift, which depends on the levels.
    from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu
    from omost_renderer.pipelines.flux2.sampling import FLUX2_SCHEDULER, flux2_sigmas

    for tokens, steps in ((1024, 4), (5000, 8)):
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(FLUX2_SCHEDULER)  # type: ignore[no-untyped-call]
        levels = torch.linspace(1.0, 1 / steps, steps).tolist()
        scheduler.set_timesteps(sigmas=levels, mu=compute_empirical_mu(tokens, steps))
        ours = flux2_sigmas(steps, 1.0, tokens, FLUX2_SCHEDULER)
        assert torch.allclose(ours, scheduler.sigmas.float(), atol=1e-6)
    # img2img: the last steps of a longer schedule, shifted for its own length.
    assert torch.equal(flux2_sigmas(4, 0.5, 256, FLUX2_SCHEDULER),
                       flux2_sigmas(8, 1.0, 256, FLUX2_SCHEDULER)[4:])  # fmt: skip


def test_model_calls_drive_the_euler_loop_like_sample_euler() -> None:
    sigmas = flow_sigmas(3, 1.0, 16, FLUX_DEV_SCHEDULER)
    start = torch.randn(1, 16, 4, generator=torch.Generator().manual_seed(0))
    expected = sample_euler(lambda i, x, s: x * 0.5 + i, start, sigmas)
    asked: list[tuple[int, float]] = []

    def call(step: FlowStep) -> FlowStep:
        asked.append((step.index, step.sigma))
        return step

    calls = model_calls(euler_steps(start, sigmas.tolist()), call)
    step = next(calls)
    for _ in range(2):
        step = calls.send(step.x * 0.5 + step.index)
    with pytest.raises(StopIteration) as done:
        calls.send(step.x * 0.5 + step.index)
    assert torch.equal(done.value.value, expected)
    assert asked == list(enumerate(sigmas.tolist()[:-1]))
