"""A render's plan: passes, seeds, generators and start strength, the same for every family."""

from __future__ import annotations

import torch
from omost_renderer.pipelines.render_plan import render_plan
from omost_renderer.pipelines.render_start import RenderStart
from omost_renderer.pipelines.rendering import RenderParams
from PIL import Image


def test_a_plain_render_runs_from_noise_with_one_generator_per_seed() -> None:
    params = RenderParams(width=64, height=64, steps=4, seed=7, num_images=2)
    plan = render_plan(params, None)
    assert plan.hires is None
    assert plan.total == 4
    assert plan.seeds == [7, 8]
    assert torch.equal(torch.randn(3, generator=plan.generators[1]),
                       torch.randn(3, generator=torch.Generator().manual_seed(8)))  # fmt: skip
    assert (plan.image_start, plan.strength, plan.keep) == (False, 1.0, None)


def test_the_hires_pass_adds_its_steps_and_the_sketch_sets_the_strength() -> None:
    params = RenderParams(width=64, height=64, steps=4, hires_scale=1.5, hires_steps=3,
                          sketch_strength=0.6)  # fmt: skip
    plan = render_plan(params, None)
    assert plan.hires == (128, 128)
    assert plan.total == 7
    assert plan.strength == 0.6


def test_an_init_image_sets_the_strength_and_a_start_the_kept_parts_seed() -> None:
    params = RenderParams(width=64, height=64, steps=4, sketch_strength=0.6)
    image = Image.new("RGB", (8, 8))
    plan = render_plan(params, RenderStart(image=image, strength=0.3, keep_seed=11))
    assert (plan.image_start, plan.strength) == (True, 0.3)
    assert plan.keep is not None
    assert torch.equal(torch.randn(3, generator=plan.keep),
                       torch.randn(3, generator=torch.Generator().manual_seed(11)))  # fmt: skip
    edit = render_plan(params, RenderStart(keep_seed=11))
    # An edit without an init image keeps the sketch's strength.
    assert (edit.image_start, edit.strength) == (False, 0.6)
