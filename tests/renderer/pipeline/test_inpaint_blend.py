"""The masked-inpainting blend and its hook in the DPM++ 2M sampler."""

from __future__ import annotations

import torch
from omost_renderer.pipelines.inpaint_blend import (
    InpaintBlend,
    renoise_flow_match,
    renoise_variance_exploding,
)
from omost_renderer.pipelines.sdxl.sampling import omost_sigmas, sample_dpmpp_2m


def _blend(steps: int = 6) -> InpaintBlend:
    base = torch.full((1, 4, 4, 4), 2.0)
    noise = torch.ones_like(base)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1.0  # left half repaints
    mask[..., 2] = 0.5  # a feather column
    return InpaintBlend(base=base, noise=noise, mask=mask, steps=steps)


def test_outside_follows_the_base_re_noised_to_the_step_sigma() -> None:
    blend = _blend()
    x = torch.full((1, 4, 4, 4), -7.0)
    out = blend(0, x, torch.tensor(3.0))
    assert (out[..., 3] == 2.0 + 3.0).all()
    assert (out[..., :2] == -7.0).all()


def test_mask_is_hard_until_the_last_steps_then_feathered() -> None:
    blend = _blend(steps=6)
    x = torch.zeros(1, 4, 4, 4)
    early = blend(2, x, torch.tensor(0.0))
    late = blend(5, x, torch.tensor(0.0))
    assert (early[..., 2] == 0.0).all()  # the feather column is free early on
    assert (late[..., 2] == 0.5 * 0.0 + 0.5 * 2.0).all()


def test_at_sigma_zero_the_kept_part_is_exactly_the_base() -> None:
    blend = _blend()
    out = blend(5, torch.randn(1, 4, 4, 4), torch.tensor(0.0))
    assert torch.equal(out[..., 3], blend.base[..., 3])


def test_renoise_rules() -> None:
    base, noise, sigma = torch.tensor(2.0), torch.tensor(1.0), torch.tensor(0.25)
    assert renoise_variance_exploding(base, noise, sigma) == 2.25
    assert renoise_flow_match(base, noise, sigma) == 0.75 * 2.0 + 0.25


def test_sampler_applies_the_blend_after_every_step_before_the_callback() -> None:
    sigmas = omost_sigmas(5)
    seen: list[tuple[int, float]] = []
    calls: list[int] = []

    def blend(i: int, x: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        calls.append(i)
        return torch.full_like(x, float(sigma_next))

    def callback(i: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        seen.append((i, float(x.flatten()[0])))

    out = sample_dpmpp_2m(lambda x, s: x * 0.5, torch.ones(1, 1, 2, 2), sigmas, callback, blend)
    assert calls == list(range(5))
    assert [i for i, _ in seen] == list(range(5))
    assert [v for _, v in seen] == [float(s) for s in sigmas[1:]]
    assert float(out.flatten()[0]) == 0.0
