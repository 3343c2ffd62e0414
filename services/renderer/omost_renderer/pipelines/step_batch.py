"""Step-level batching: the renders of several jobs advanced one denoising step at a time, together.

A render that can be batched is a generator (a family's ``render_steps``). It does its own per-job
work (text encoding, the start latents, the hires pass's decode and encode, the final decode) and
yields a :class:`DenoiseCall` each time it needs the model; the driver sends back that call's
result. :class:`StepBatch` holds up to ``max_jobs`` such generators and, at every step, makes one
model call (the family's ``denoise_batch``) for the pending calls that share a key (the family,
the latent shape, the dtype): a job joins at a step boundary and leaves when its own schedule
ends, so a 4-step job never waits for a 50-step one. Calls with another key wait for a step of
their own; the key whose job has waited longest goes first, so no shape starves.

A render alone is the same generator driven with batches of one (:func:`render_alone`): alone and
batched share every line of the pipeline but the concatenation of the inputs.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from omost_schema import Canvas

from omost_renderer.pipelines.render_start import RenderStart
from omost_renderer.pipelines.rendering import (
    CanvasRenderer,
    RenderedImage,
    RenderParams,
    StepCallback,
)


@dataclass(frozen=True)
class DenoiseCall:
    """One model evaluation a render asks for, as the driver batches it.

    Attributes:
        key: Calls with equal keys may share one model call (family, latent shape, dtype, ...).
        rows: Rows of the model batch the call occupies (two per image with batched guidance).
        payload: The family's own inputs (latents, noise level, conditioning); only the
            family's ``denoise_batch`` reads it.
    """

    key: Hashable
    rows: int
    payload: Any


#: A render as a generator: yields model calls, is sent their results, returns the images.
RenderSteps = Generator[DenoiseCall, torch.Tensor, list[RenderedImage]]

#: What a generator of model calls returns (a render's images, a pass's latents).
Result = TypeVar("Result")


@runtime_checkable
class BatchingRenderer(Protocol):
    """A renderer whose renders can share model calls with other jobs' renders."""

    def render_steps(
        self,
        canvas: Canvas,
        params: RenderParams,
        on_step: StepCallback | None = None,
        *,
        start: RenderStart | None = None,
    ) -> RenderSteps:
        """The render of ``canvas`` as a generator of model calls (see the module's docstring)."""
        ...

    def denoise_batch(self, calls: Sequence[DenoiseCall]) -> list[torch.Tensor]:
        """Evaluate calls of one key in one model call; one result per call, in order."""
        ...


def drive_alone(
    renderer: BatchingRenderer, steps: Generator[DenoiseCall, torch.Tensor, Result]
) -> Result:
    """Drive a generator of model calls (a render, one pass) to its end with batches of one.

    Args:
        renderer: The family whose ``denoise_batch`` evaluates the calls.
        steps: The generator.

    Returns:
        The generator's value.
    """
    try:
        call = next(steps)
        while True:
            [result] = renderer.denoise_batch([call])
            call = steps.send(result)
    except StopIteration as done:
        value: Result = done.value
        return value


def render_alone(renderer: BatchingRenderer, steps: RenderSteps) -> list[RenderedImage]:
    """Drive one render to its end with batches of one.

    Args:
        renderer: The family that made ``steps``.
        steps: A render from ``renderer.render_steps``.

    Returns:
        The render's images.
    """
    return drive_alone(renderer, in_inference_mode(steps))


def in_inference_mode(
    steps: Generator[DenoiseCall, torch.Tensor, Result],
) -> Generator[DenoiseCall, torch.Tensor, Result]:
    """``steps`` with every resume run in ``torch.inference_mode``, and the mode off in between.

    A ``with torch.inference_mode()`` around a ``yield`` would leak the mode into the driver
    and into the other renders it resumes; this enters and leaves it around each resume.
    Closing the wrapper closes ``steps``.

    Args:
        steps: A generator of model calls.

    Returns:
        The same generator, each of its resumes in inference mode.
    """
    try:
        try:
            with torch.inference_mode():
                call = next(steps)
        except StopIteration as done:
            first: Result = done.value
            return first
        while True:
            result = yield call
            try:
                with torch.inference_mode():
                    call = steps.send(result)
            except StopIteration as done:
                value: Result = done.value
                return value
    finally:
        steps.close()


def plain_render_steps(
    renderer: CanvasRenderer,
    canvas: Canvas,
    params: RenderParams,
    on_step: StepCallback | None = None,
    *,
    start: RenderStart | None = None,
) -> RenderSteps:
    """A renderer without ``render_steps`` as a generator that makes no model call of its own.

    Its whole render runs when the driver first advances it, so it never shares a step; a
    ``start`` is passed on only when given (plain renderers may not take it).
    """
    if start is None:
        return renderer.render(canvas, params, on_step)
    starting: Any = renderer
    images: list[RenderedImage] = starting.render(canvas, params, on_step, start=start)
    return images
    yield  # unreachable: the ``yield`` makes this function a generator


@dataclass(frozen=True)
class JobOutcome:
    """How a job's render ended: its images, or the exception that ended it."""

    job_id: str
    images: list[RenderedImage] | None = None
    error: Exception | None = None


@dataclass
class _Slot:
    job_id: str
    steps: RenderSteps
    call: DenoiseCall
    #: The driver's step count when this job last got a result: the oldest goes first.
    waiting_since: int


@dataclass
class StepBatch:
    """Up to ``max_jobs`` renders advanced together, one shared model call per step.

    Not thread-safe: the worker's job loop is its only user.

    Args:
        renderer: The family every render belongs to.
        max_jobs: Renders held at once (``OMOST_RENDERER_MAX_BATCH``).
    """

    renderer: BatchingRenderer
    max_jobs: int
    _slots: list[_Slot] = field(default_factory=list)
    _steps_taken: int = 0
    #: Model calls made, and the rows and renders they carried (for metrics).
    calls_made: int = 0
    rows_run: int = 0
    renders_stepped: int = 0
    #: Batches whose shared call failed and were retried one render at a time.
    splits: int = 0

    def __post_init__(self) -> None:
        if self.max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, got {self.max_jobs}")

    @property
    def job_ids(self) -> list[str]:
        """The jobs being rendered, oldest first."""
        return [slot.job_id for slot in self._slots]

    @property
    def free(self) -> int:
        """How many more jobs fit."""
        return self.max_jobs - len(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, job_id: str, steps: RenderSteps) -> JobOutcome | None:
        """Start a render: run it up to its first model call (its per-job preparation).

        Args:
            job_id: The job's id (unique among the held jobs).
            steps: The job's render generator; each of its resumes runs in inference mode.

        Returns:
            The outcome when the render ended before needing the model (a plain renderer, an
            error, a cancel seen at once), else ``None``: it waits for the next ``step``.
        """
        if self.free <= 0:
            raise RuntimeError("the batch is full")
        if job_id in self.job_ids:
            raise ValueError(f"job {job_id} is already in the batch")
        steps = in_inference_mode(steps)
        try:
            call = next(steps)
        except StopIteration as done:
            return JobOutcome(job_id, images=done.value)
        except Exception as error:
            return JobOutcome(job_id, error=error)
        self._slots.append(_Slot(job_id, steps, call, self._steps_taken))
        return None

    def drop(self, job_id: str) -> bool:
        """Remove a job from the batch and close its render; return whether it was there."""
        for slot in self._slots:
            if slot.job_id == job_id:
                self._slots.remove(slot)
                slot.steps.close()
                return True
        return False

    def step(self) -> list[JobOutcome]:
        """One model call for the renders whose pending call shares the oldest waiting key.

        Each of them is sent its result and runs to its next model call; a render that ends
        (its images, or an exception from its own code or its step callback) leaves the batch.
        When the shared call fails, the renders are retried one at a time, so the failure is
        pinned on the render that causes it and its neighbours go on.

        Returns:
            The renders that ended during this step.
        """
        if not self._slots:
            return []
        self._steps_taken += 1
        oldest = min(self._slots, key=lambda slot: slot.waiting_since)
        group = [slot for slot in self._slots if slot.call.key == oldest.call.key]
        calls = [slot.call for slot in group]
        try:
            results: list[torch.Tensor | Exception] = list(self.renderer.denoise_batch(calls))
            if len(results) != len(calls):
                # A family bug, not a job's: counted as the call's failure, so it is split.
                raise RuntimeError(f"{len(calls)} calls gave {len(results)} results")
            self._count(calls)
        except Exception as error:
            if len(group) == 1:
                results = [error]
            else:
                self.splits += 1
                results = [self._alone(call) for call in calls]
        outcomes = []
        for slot, result in zip(group, results, strict=True):
            outcome = self._advance(slot, result)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _alone(self, call: DenoiseCall) -> torch.Tensor | Exception:
        try:
            [result] = self.renderer.denoise_batch([call])
        except Exception as error:  # a wrong result count (ValueError) included
            return error
        self._count([call])
        return result

    def _count(self, calls: list[DenoiseCall]) -> None:
        self.calls_made += 1
        self.rows_run += sum(call.rows for call in calls)
        self.renders_stepped += len(calls)

    def _advance(self, slot: _Slot, result: torch.Tensor | Exception) -> JobOutcome | None:
        """Send ``result`` to the render (or end it with the failure); its outcome if it ended."""
        if isinstance(result, Exception):
            self._slots.remove(slot)
            slot.steps.close()
            return JobOutcome(slot.job_id, error=result)
        try:
            slot.call = slot.steps.send(result)
        except StopIteration as done:
            self._slots.remove(slot)
            return JobOutcome(slot.job_id, images=done.value)
        except Exception as error:
            self._slots.remove(slot)
            return JobOutcome(slot.job_id, error=error)
        slot.waiting_since = self._steps_taken
        return None
