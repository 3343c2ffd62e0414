"""Step batching on the tiny FLUX.1 pipeline: every job of a batch renders what it renders alone."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from batching import Job, assert_same_render, no_host_reads, region_edit, run_batch
from omost_renderer.pipelines.flux.pipeline_flux import OmostFluxPipeline
from omost_renderer.pipelines.flux.step_inputs import FluxCall, batch_inputs, placed
from omost_renderer.pipelines.flux.tiny import build_tiny_flux
from omost_renderer.pipelines.regional_schedule import RegionalSchedule
from omost_renderer.pipelines.rendering import RenderParams
from omost_schema import Canvas


@pytest.fixture(scope="module")
def tiny_flux() -> OmostFluxPipeline:
    # The mask in the first 2 steps only, every other block, with the base-pass blend: a batch
    # mixes masked and unmasked jobs and blocks.
    schedule = RegionalSchedule(regional_steps=2, regional_blocks=2, base_ratio=0.3)
    return build_tiny_flux(schedule=schedule)


def _canvases(dragon: Canvas) -> dict[str, Canvas]:
    smaller = dragon.model_copy(deep=True)
    smaller.local_descriptions = smaller.local_descriptions[:1]
    only_global = dragon.model_copy(deep=True)
    only_global.local_descriptions = []
    return {"dragon": dragon, "smaller": smaller, "global": only_global}


def test_flux_jobs_in_one_batch_render_what_they_render_alone(
    tiny_flux: OmostFluxPipeline, dragon_canvas: Canvas
) -> None:
    canvases = _canvases(dragon_canvas)
    base_params = RenderParams(width=64, height=64, steps=3, seed=5)
    edited, start = region_edit(tiny_flux, dragon_canvas, base_params)
    jobs = {
        "long": (canvases["dragon"], RenderParams(width=64, height=64, steps=4, seed=1), None),
        "short": (
            canvases["smaller"],
            RenderParams(width=64, height=64, steps=2, seed=2, num_images=2, cfg=5.0),
            None,
        ),
        "global": (canvases["global"], RenderParams(width=64, height=64, steps=3, seed=3), None),
        "hires": (
            canvases["smaller"],
            RenderParams(
                width=64,
                height=64,
                steps=2,
                seed=4,
                hires_scale=2.0,
                hires_steps=2,
                hires_denoise=0.5,
            ),
            None,
        ),
        "edit": (edited, base_params.model_copy(update={"seed": 9}), start),
    }
    join_at = {"global": 1, "edit": 2}
    outcomes, batch = run_batch(
        tiny_flux,
        [
            Job(name, partial(tiny_flux.render_steps, c, p, start=s), join_at.get(name, 0))
            for name, (c, p, s) in jobs.items()
        ],
    )  # fmt: skip
    for name, (canvas, params, begin) in jobs.items():
        outcome = outcomes[name]
        assert outcome.error is None, (name, outcome.error)
        assert outcome.images is not None
        # The hires pass re-encodes truncated pixels: the batch's float noise in the base pass
        # can move a pixel by a level, which the second pass carries a little further.
        atol = 1e-3 if name == "hires" else 1e-4
        assert_same_render(outcome.images, tiny_flux.render(canvas, params, start=begin), atol)
    assert batch.calls_made < batch.renders_stepped
    assert batch.splits == 0


def test_flux_step_loop_reads_nothing_back_from_the_device(
    tiny_flux: OmostFluxPipeline, dragon_canvas: Canvas
) -> None:
    canvases = _canvases(dragon_canvas)
    steps = 3
    params = RenderParams(width=64, height=64, steps=steps, seed=1)
    renders = [tiny_flux.render_steps(c, params) for c in canvases.values()]
    calls = [next(render) for render in renders]
    for index in range(steps):
        with no_host_reads():
            results = tiny_flux.denoise_batch(calls)
            if index < steps - 1:
                calls = [r.send(x) for r, x in zip(renders, results, strict=True)]
    for render, result in zip(renders, results, strict=True):
        with pytest.raises(StopIteration):
            render.send(result)


def test_padding_text_is_hidden_and_each_job_keeps_its_mask(
    tiny_flux: OmostFluxPipeline, dragon_canvas: Canvas
) -> None:
    canvases = _canvases(dragon_canvas)
    params = RenderParams(width=64, height=64, steps=2, seed=1)
    renders = [tiny_flux.render_steps(canvases[n], params) for n in ("global", "dragon")]
    calls: list[FluxCall] = [next(r).payload for r in renders]
    short, long = (call.text.text_length for call in calls)
    assert short < long
    inputs = batch_inputs(calls, every=1, base_ratio=0.3, dtype=torch.float32)
    regional = inputs.regional
    assert regional is not None
    assert regional.unmasked is not None
    assert inputs.embeds.shape[:2] == (2, long)
    image = inputs.image_ids.shape[0]
    for mask in (regional.bias[0, 0], regional.unmasked[0, 0]):
        # No query sees the short job's padding keys, but each padding query sees itself.
        pads = mask[:, short:long]
        assert (pads.diagonal(offset=-short) == 0).all()
        assert int(torch.isfinite(pads).sum()) == long - short
    # The long job's rows are its own joint mask, unpadded.
    own = calls[1].text.mask
    assert own is not None
    assert torch.equal(regional.bias[1, 0], own[0, 0])
    # The global-only job has no mask of its own: only the padding is hidden.
    assert torch.equal(regional.bias[0, 0], placed(None, short, long, image))
    assert regional.bias.stride()[-2] % 8 == 0
    # The base-pass share is the schedule's for a masked job, 0 for the other.
    assert isinstance(regional.base_ratio, torch.Tensor)
    assert regional.base_ratio.flatten().tolist() == pytest.approx([0.0, 0.3])
    for render in renders:
        render.close()


def test_without_regional_processors_only_equal_texts_share_a_step(
    dragon_canvas: Canvas,
) -> None:
    stock = build_tiny_flux(regional=False)
    canvases = _canvases(dragon_canvas)
    params = RenderParams(width=64, height=64, steps=2, seed=1)
    keys = [next(stock.render_steps(c, params)).key for c in canvases.values()]
    assert len(set(keys)) == 3
    # The same texts (another seed, another image count) do share a step.
    again = params.model_copy(update={"seed": 2, "num_images": 2})
    assert next(stock.render_steps(canvases["dragon"], again)).key == keys[0]
    # With the regional processors the padding is hidden: the three texts share one step.
    regional = build_tiny_flux()
    assert len({next(regional.render_steps(c, params)).key for c in canvases.values()}) == 1
