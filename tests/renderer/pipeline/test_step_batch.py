"""StepBatch, the driver of step-level batching, on a fake renderer (no model)."""

from __future__ import annotations

from collections.abc import Generator, Hashable, Sequence

import pytest
import torch
from omost_renderer.pipelines.rendering import RenderedImage
from omost_renderer.pipelines.step_batch import (
    BatchingRenderer,
    DenoiseCall,
    RenderSteps,
    StepBatch,
    drive_alone,
    in_inference_mode,
    render_alone,
)
from PIL import Image


class FakeRenderer:
    """Each call's payload is a tensor; the "model" adds 1 and records which calls shared a step."""

    def __init__(self) -> None:
        self.groups: list[list[Hashable]] = []
        self.poison: set[float] = set()

    def render_steps(self, *args: object, **kwargs: object) -> RenderSteps:
        raise NotImplementedError

    def job(self, key: Hashable, steps: int, start: float = 0.0) -> RenderSteps:
        """A render of ``steps`` model calls; returns one image whose seed is the final value."""
        x = torch.tensor([start])
        for _ in range(steps):
            x = yield DenoiseCall(key, 1, x)
        return [RenderedImage(Image.new("RGB", (1, 1)), seed=int(x[0]), metadata={})]

    def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
        if any(float(call.payload[0]) in self.poison for call in calls):
            raise RuntimeError("poisoned")
        self.groups.append([call.key for call in calls])
        return [call.payload + 1 for call in calls]


def _finish(batch: StepBatch) -> dict[str, int]:
    seeds: dict[str, int] = {}
    for _ in range(100):
        for outcome in batch.step():
            assert outcome.images is not None, outcome.error
            seeds[outcome.job_id] = outcome.images[0].seed
        if not len(batch):
            return seeds
    raise AssertionError("the batch did not finish")


def test_the_fake_is_a_batching_renderer() -> None:
    assert isinstance(FakeRenderer(), BatchingRenderer)


def test_jobs_of_one_key_share_each_step_and_a_short_job_leaves_early() -> None:
    fake = FakeRenderer()
    batch = StepBatch(fake, max_jobs=3)
    assert batch.add("long", fake.job("a", 4)) is None
    assert batch.add("short", fake.job("a", 2, start=10)) is None
    assert _finish(batch) == {"long": 4, "short": 12}
    assert fake.groups == [["a", "a"], ["a", "a"], ["a"], ["a"]]
    assert (batch.calls_made, batch.renders_stepped, batch.rows_run) == (4, 6, 6)


def test_a_job_joins_at_a_step_boundary() -> None:
    fake = FakeRenderer()
    batch = StepBatch(fake, max_jobs=2)
    batch.add("first", fake.job("a", 3))
    batch.step()
    batch.add("late", fake.job("a", 2))
    assert _finish(batch) == {"first": 3, "late": 2}
    assert fake.groups == [["a"], ["a", "a"], ["a", "a"]]


def test_shapes_wait_for_their_own_batch_and_take_turns() -> None:
    fake = FakeRenderer()
    batch = StepBatch(fake, max_jobs=4)
    batch.add("a1", fake.job("a", 2))
    batch.add("b1", fake.job("b", 2))
    batch.add("a2", fake.job("a", 2))
    batch.add("b2", fake.job("b", 2))
    _finish(batch)
    # Never two keys in one call; the key that waited longest goes next, so they alternate.
    assert fake.groups == [["a", "a"], ["b", "b"], ["a", "a"], ["b", "b"]]


def test_a_lone_shape_is_not_starved_by_a_busier_one() -> None:
    fake = FakeRenderer()
    batch = StepBatch(fake, max_jobs=4)
    for index in range(3):
        batch.add(f"a{index}", fake.job("a", 3))
    batch.add("b", fake.job("b", 3))
    _finish(batch)
    steps_of_b = [index for index, group in enumerate(fake.groups) if group == ["b"]]
    assert steps_of_b == [1, 3, 5]


def test_a_failing_shared_call_is_split_and_pinned_on_its_job() -> None:
    fake = FakeRenderer()
    fake.poison.add(101.0)
    batch = StepBatch(fake, max_jobs=3)
    batch.add("ok", fake.job("a", 2))
    batch.add("bad", fake.job("a", 2, start=100))
    outcomes = {o.job_id: o for _ in range(3) for o in batch.step()}
    assert isinstance(outcomes["bad"].error, RuntimeError)
    assert outcomes["ok"].images is not None
    assert outcomes["ok"].images[0].seed == 2
    assert batch.splits == 1


def test_a_render_that_ends_or_fails_before_its_first_call_never_enters() -> None:
    def immediate() -> RenderSteps:
        return []
        yield  # a generator

    def broken() -> RenderSteps:
        raise ValueError("bad input")
        yield  # a generator

    batch = StepBatch(FakeRenderer(), max_jobs=2)
    done = batch.add("done", immediate())
    assert done is not None
    assert done.images == []
    failed = batch.add("failed", broken())
    assert failed is not None
    assert isinstance(failed.error, ValueError)
    assert len(batch) == 0


def test_capacity_and_unique_ids_are_enforced() -> None:
    fake = FakeRenderer()
    batch = StepBatch(fake, max_jobs=1)
    batch.add("one", fake.job("a", 2))
    assert batch.free == 0
    with pytest.raises(RuntimeError, match="full"):
        batch.add("two", fake.job("a", 2))
    with pytest.raises(ValueError, match="at least 1"):
        StepBatch(fake, max_jobs=0)


def test_drop_closes_the_render() -> None:
    closed: list[bool] = []

    def render() -> RenderSteps:
        try:
            yield DenoiseCall("a", 1, torch.zeros(1))
        finally:
            closed.append(True)
        return []

    batch = StepBatch(FakeRenderer(), max_jobs=1)
    batch.add("x", render())
    assert batch.drop("x")
    assert closed == [True]
    assert not batch.drop("x")


def test_render_alone_drives_batches_of_one() -> None:
    fake = FakeRenderer()
    images = render_alone(fake, fake.job("a", 3, start=1))
    assert images[0].seed == 4
    assert fake.groups == [["a"]] * 3


def test_inference_mode_is_on_inside_each_resume_and_off_between() -> None:
    seen: list[bool] = []

    def render() -> Generator[DenoiseCall, torch.Tensor, int]:
        seen.append(torch.is_inference_mode_enabled())
        yield DenoiseCall("a", 1, torch.zeros(1))
        seen.append(torch.is_inference_mode_enabled())
        return 7

    wrapped = in_inference_mode(render())
    call = next(wrapped)
    assert not torch.is_inference_mode_enabled()
    with pytest.raises(StopIteration) as done:
        wrapped.send(call.payload)
    assert done.value.value == 7
    assert seen == [True, True]
    assert drive_alone(FakeRenderer(), in_inference_mode(render())) == 7


def test_the_driver_runs_every_resume_of_a_render_in_inference_mode() -> None:
    # The driver, not each family, owns the mode: a render given to StepBatch or render_alone
    # runs its per-job work in it, and the driver's own code between steps does not.
    seen: list[bool] = []
    fake = FakeRenderer()

    def render() -> RenderSteps:
        for _ in range(2):
            seen.append(torch.is_inference_mode_enabled())
            yield DenoiseCall("a", 1, torch.zeros(1))
        seen.append(torch.is_inference_mode_enabled())
        return []

    batch = StepBatch(fake, max_jobs=1)
    assert batch.add("a", render()) is None
    while len(batch):
        assert not torch.is_inference_mode_enabled()
        batch.step()
    render_alone(fake, render())
    assert seen == [True] * 6


def test_a_family_that_returns_the_wrong_number_of_results_fails_the_call_not_the_loop() -> None:
    class Short(FakeRenderer):
        def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
            return super().denoise_batch(calls)[:1] if len(calls) > 1 else []

    fake = Short()
    batch = StepBatch(fake, max_jobs=2)
    batch.add("a", fake.job("a", 2))
    batch.add("b", fake.job("a", 2))
    outcomes = batch.step()
    assert sorted(o.job_id for o in outcomes) == ["a", "b"]
    assert all(o.error is not None for o in outcomes)
    assert batch.splits == 1
