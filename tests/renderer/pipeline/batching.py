"""Helpers of the step-batching tests: a driver with joins, the comparison, a host-sync guard."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omost_renderer.pipelines.render_start import RenderStart, RepaintArea
from omost_renderer.pipelines.rendering import RenderedImage, RenderParams
from omost_renderer.pipelines.step_batch import (
    BatchingRenderer,
    DenoiseCall,
    JobOutcome,
    RenderSteps,
    StepBatch,
)
from omost_schema import Canvas
from omost_schema.diff import diff_canvases, repaint_rects
from torch.overrides import TorchFunctionMode

#: Tensor methods that read a value back to the host (a device sync on CUDA).
HOST_READS = frozenset({"item", "__float__", "__bool__", "__int__", "__index__", "tolist", "numpy"})


class HostSyncError(AssertionError):
    """A tensor's value was read on the host inside a guarded step."""


class NoHostReads(TorchFunctionMode):
    """Fails on ``.item()``, ``float()``, ``bool()``, ``int()``, ``.tolist()`` of any tensor."""

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if getattr(func, "__name__", "") in HOST_READS:
            raise HostSyncError(f"{func.__name__} of a tensor inside a step")
        return func(*args, **(kwargs or {}))


@contextmanager
def no_host_reads() -> Iterator[None]:
    """Run the block under :class:`NoHostReads`."""
    with NoHostReads():
        yield


@dataclass(frozen=True)
class Job:
    """A render to put in the batch at driver step ``join_at``."""

    job_id: str
    steps: Callable[[], RenderSteps]
    join_at: int = 0


def run_batch(
    renderer: BatchingRenderer, jobs: list[Job], max_jobs: int = 8
) -> tuple[dict[str, JobOutcome], StepBatch]:
    """Drive ``jobs`` through one :class:`StepBatch`, each joining at its step boundary."""
    batch = StepBatch(renderer, max_jobs)
    waiting = sorted(jobs, key=lambda job: job.join_at)
    outcomes: dict[str, JobOutcome] = {}
    step = 0
    while waiting or len(batch):
        while waiting and waiting[0].join_at <= step and batch.free:
            job = waiting.pop(0)
            ended = batch.add(job.job_id, job.steps())
            if ended is not None:
                outcomes[job.job_id] = ended
        for outcome in batch.step():
            outcomes[outcome.job_id] = outcome
        step += 1
        if step > 1000:
            raise RuntimeError("the batch does not finish")
    return outcomes, batch


def assert_same_render(
    batched: list[RenderedImage], alone: list[RenderedImage], atol: float = 1e-4
) -> None:
    """Same images (within a level) and the same final latents of every pass, within ``atol``."""
    assert len(batched) == len(alone)
    for a, b in zip(batched, alone, strict=True):
        assert a.seed == b.seed
        assert a.image.size == b.image.size
        diff = np.abs(np.asarray(a.image, np.int16) - np.asarray(b.image, np.int16))
        assert int(diff.max()) <= 1
        assert a.latents.keys() == b.latents.keys()
        for name in a.latents:
            np.testing.assert_allclose(a.latents[name], b.latents[name], atol=atol, rtol=1e-4)


@dataclass(frozen=True)
class Poisoned:
    """A call whose evaluation fails wherever it is (alone or in a batch)."""

    payload: Any


class PoisonRenderer:
    """A renderer that fails every model call carrying a :class:`Poisoned` payload."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def render_steps(self, *args: Any, **kwargs: Any) -> RenderSteps:
        """The inner renderer's render."""
        steps: RenderSteps = self.inner.render_steps(*args, **kwargs)
        return steps

    def poisoned(self, steps: RenderSteps) -> RenderSteps:
        """``steps`` with every call marked poisoned."""
        try:
            call = next(steps)
            while True:
                result = yield DenoiseCall(call.key, call.rows, Poisoned(call.payload))
                call = steps.send(result)
        except StopIteration as done:
            value: list[RenderedImage] = done.value
            return value

    def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
        """Fail when any call is poisoned, else the inner renderer's batch."""
        if any(isinstance(call.payload, Poisoned) for call in calls):
            raise RuntimeError("poisoned call")
        result: list[torch.Tensor] = self.inner.denoise_batch(calls)
        return result


def region_edit(renderer: Any, canvas: Canvas, params: RenderParams) -> tuple[Canvas, RenderStart]:
    """The canvas with one region recoloured, and the start that repaints only that region.

    ``renderer`` renders the base (any family that takes a ``RenderStart``).
    """
    base = renderer.render(canvas, params)[0]
    edited = canvas.model_copy(deep=True)
    edited.local_descriptions[0].HTML_web_color_name = "blue"
    rects = repaint_rects(diff_canvases(canvas, edited))
    start = RenderStart(latents=base.latents, keep_seed=base.seed,
                        repaint=RepaintArea(rects=tuple(rects)), kept_image=base.image)  # fmt: skip
    return edited, start
