"""Step batching on the tiny SDXL pipeline: every job of a batch renders what it renders alone."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from batching import (
    Job,
    PoisonRenderer,
    assert_same_render,
    no_host_reads,
    region_edit,
    run_batch,
)
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_renderer.pipelines.sdxl.step_inputs import UNetCall
from omost_schema import Canvas, LocalDescription
from PIL import Image


def _canvases(dragon: Canvas) -> dict[str, Canvas]:
    """Three canvases with different numbers of regions, so different key lengths."""
    bigger = dragon.model_copy(deep=True)
    bigger.local_descriptions.append(
        LocalDescription(
            location="on the bottom",
            offset="no offset",
            area="a large horizontal area",
            distance_to_viewer=1.0,
            description="A misty valley with a winding river.",
            detailed_descriptions=["Pine trees line the river banks."],
            tags="valley, river, mist",
            atmosphere="Calm.",
            style="Detailed fantasy painting.",
            quality_meta="High detail.",
            HTML_web_color_name="seagreen",
        )
    )
    smaller = dragon.model_copy(deep=True)
    smaller.local_descriptions = smaller.local_descriptions[:1]
    return {"dragon": dragon, "bigger": bigger, "smaller": smaller}


def test_jobs_in_one_batch_render_what_they_render_alone(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    canvases = _canvases(dragon_canvas)
    base_params = RenderParams(width=64, height=64, steps=3, seed=5)
    edited, start = region_edit(tiny_renderer, dragon_canvas, base_params)
    jobs = {
        "long": (canvases["dragon"], RenderParams(width=64, height=64, steps=5, seed=1), None),
        # Two images, another cfg, more regions; leaves after 2 steps.
        "short": (
            canvases["bigger"],
            RenderParams(width=64, height=64, steps=2, seed=2, num_images=2, cfg=3.0),
            None,
        ),
        # A hires job: its base pass shares steps, its hires pass (16x16) batches on its own.
        "hires": (
            canvases["smaller"],
            RenderParams(
                width=64,
                height=64,
                steps=2,
                seed=3,
                hires_scale=2.0,
                hires_steps=2,
                hires_denoise=0.5,
            ),
            None,
        ),
        "edit": (edited, base_params.model_copy(update={"seed": 9}), start),
        "joins": (canvases["smaller"], RenderParams(width=64, height=64, steps=3, seed=4), None),
    }
    join_at = {"joins": 2, "edit": 1}
    outcomes, batch = run_batch(
        tiny_renderer,
        [
            Job(name, partial(tiny_renderer.render_steps, c, p, start=s), join_at.get(name, 0))
            for name, (c, p, s) in jobs.items()
        ],
    )
    for name, (canvas, params, begin) in jobs.items():
        outcome = outcomes[name]
        assert outcome.error is None, (name, outcome.error)
        assert outcome.images is not None
        assert_same_render(outcome.images, tiny_renderer.render(canvas, params, start=begin))
    # Steps were shared: fewer UNet calls than job steps, and more rows per call than one job's.
    assert batch.calls_made < batch.renders_stepped
    assert batch.splits == 0


def test_a_cancelled_job_leaves_and_the_others_finish_unchanged(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    class CancelledError(Exception):
        pass

    def cancel_at_2(step: int, total: int, preview: Image.Image | None) -> None:
        if step == 2:
            raise CancelledError

    canvases = _canvases(dragon_canvas)
    params = RenderParams(width=64, height=64, steps=4, seed=7)
    outcomes, _ = run_batch(
        tiny_renderer,
        [
            Job("a", lambda: tiny_renderer.render_steps(canvases["dragon"], params)),
            Job(
                "cancel",
                lambda: tiny_renderer.render_steps(canvases["bigger"], params, cancel_at_2),
            ),
            Job("b", lambda: tiny_renderer.render_steps(canvases["smaller"], params)),
        ],
    )
    assert isinstance(outcomes["cancel"].error, CancelledError)
    for name in ("a", "b"):
        images = outcomes[name].images
        assert images is not None
        canvas = canvases["dragon" if name == "a" else "smaller"]
        assert_same_render(images, tiny_renderer.render(canvas, params))


def test_a_poisoned_job_is_pinned_by_the_split_and_the_others_finish(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    poison = PoisonRenderer(tiny_renderer)
    canvases = _canvases(dragon_canvas)
    params = RenderParams(width=64, height=64, steps=3, seed=2)
    outcomes, batch = run_batch(
        poison,
        [
            Job("a", lambda: poison.render_steps(canvases["dragon"], params)),
            Job("poison", lambda: poison.poisoned(poison.render_steps(canvases["bigger"], params))),
            Job("b", lambda: poison.render_steps(canvases["smaller"], params)),
        ],
    )
    assert str(outcomes["poison"].error) == "poisoned call"
    assert batch.splits == 1
    for name, canvas in (("a", "dragon"), ("b", "smaller")):
        images = outcomes[name].images
        assert images is not None
        assert_same_render(images, tiny_renderer.render(canvases[canvas], params))


def test_separate_guidance_renders_through_the_same_steps(dragon_canvas: Canvas) -> None:
    from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer

    separate = build_tiny_renderer(batched_guidance=False)
    batched = build_tiny_renderer(batched_guidance=True)
    params = RenderParams(width=64, height=64, steps=3, seed=3)
    canvases = _canvases(dragon_canvas)
    outcomes, batch = run_batch(
        separate,
        [Job(name, partial(separate.render_steps, c, params)) for name, c in canvases.items()],
    )
    # Separate passes share no UNet call: one job per step.
    assert batch.calls_made == batch.renders_stepped == 3 * len(canvases)
    for name, canvas in canvases.items():
        images = outcomes[name].images
        assert images is not None
        assert images[0].metadata["guidance"] == "separate"
        assert_same_render(images, batched.render(canvas, params), atol=1e-3)


def test_the_step_loop_reads_nothing_back_from_the_device(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    canvases = _canvases(dragon_canvas)
    steps = 3
    params = RenderParams(width=64, height=64, steps=steps, seed=1)
    edited, start = region_edit(tiny_renderer, dragon_canvas, params)
    seen: list[int] = []

    def progress(step: int, total: int, preview: Image.Image | None) -> None:
        seen.append(step)

    renders = [tiny_renderer.render_steps(c, params, progress) for c in canvases.values()]
    # An edit: its inpainting blend runs after every step.
    renders.append(tiny_renderer.render_steps(edited, params, progress, start=start))
    # The per-job preparation (text, noise) may read the host; the steps may not (the previews,
    # every ``preview_every`` steps and at the last, do by design: the last is not guarded).
    calls = [next(render) for render in renders]
    for index in range(steps):
        with no_host_reads():
            results = tiny_renderer.denoise_batch(calls)
            if index < steps - 1:
                calls = [r.send(x) for r, x in zip(renders, results, strict=True)]
    # The last send decodes (a host read by design); the guard saw every step before it.
    for render, result in zip(renders, results, strict=True):
        with pytest.raises(StopIteration) as done:
            render.send(result)
        assert len(done.value.value) == 1
    assert sorted(seen) == sorted([1, 2, 3] * len(renders))


def test_the_guard_catches_a_host_read(tiny_renderer: OmostSDXLPipeline) -> None:
    with no_host_reads(), pytest.raises(AssertionError, match="item"):
        torch.ones(1).item()
    # Every way of reading a value back, a branch on a tensor included.
    one = torch.ones(1)
    reads = {
        "__float__": lambda: float(one),
        "__bool__": lambda: 1 if one > 0 else 0,
        "__int__": lambda: int(one),
        "__index__": lambda: [0, 1][torch.tensor(1)],
        "tolist": one.tolist,
        "numpy": one.numpy,
    }
    for name, read in reads.items():
        with no_host_reads(), pytest.raises(AssertionError, match=name):
            read()


def test_a_batch_pads_shorter_jobs_keys_and_hides_them(
    tiny_renderer: OmostSDXLPipeline, dragon_canvas: Canvas
) -> None:
    canvases = _canvases(dragon_canvas)
    params = RenderParams(width=64, height=64, steps=2, seed=1)
    renders = [tiny_renderer.render_steps(canvases[n], params) for n in ("smaller", "bigger")]
    calls = [next(r) for r in renders]
    payloads: list[UNetCall] = [call.payload for call in calls]
    inputs = tiny_renderer.unet_steps.batches.inputs(payloads)
    lengths = [p.text.embeds.shape[1] for p in payloads]  # type: ignore[union-attr]
    assert lengths[0] < lengths[1]
    assert inputs.embeds.shape[:2] == (4, lengths[1])
    regions = inputs.context.token_region
    assert (regions[:2, lengths[0] :] == -1).all()
    scale, bias = inputs.context.for_layer(16, torch.device("cpu"), torch.float32)
    assert bias.shape == (4, 16, lengths[1])
    assert (bias[:2, :, lengths[0] :] == float("-inf")).all()
    assert (scale[:2, lengths[0] :] == 0).all()
    # The second job's regions follow the first job's in the shared masks.
    first_regions = payloads[0].text.masks.shape[0]  # type: ignore[union-attr]
    assert int(regions[2:].max()) >= first_regions
    assert int(regions[2:][regions[2:] >= 0].min()) == first_regions
    for render in renders:
        render.close()
