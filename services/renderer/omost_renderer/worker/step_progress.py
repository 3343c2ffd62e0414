"""What a worker does at each denoising step of a job: its progress event, previews, cancel, fence.

Every job in a batch has its own step callback, so progress, previews and cancels stay per job: the
callback raises to end its own render (a cancel, a newer attempt owning the job, the worker's
shutdown grace spent), and the batch driver takes that render out at this step while the others go
on.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable

from PIL import Image

from omost_renderer.config import Settings
from omost_renderer.errors import FencedOutError, JobCanceledError, JobReleasedError
from omost_renderer.job_queue.worker_queue import WorkerQueue
from omost_renderer.pipelines.rendering import StepCallback
from omost_renderer.worker.job_watch import RunningJob


def encode_preview(preview: Image.Image, size: int) -> str:
    """Return a small JPEG of ``preview`` as a ``data:`` URL."""
    small = preview.convert("RGB")
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def step_callback(
    running: RunningJob,
    queue: WorkerQueue,
    settings: Settings,
    release_due: Callable[[], bool],
) -> StepCallback:
    """The step callback of one job's render.

    Args:
        running: The attempt being rendered (its step time feeds the stall watch).
        queue: Writes the progress event (and learns of a cancel or a newer attempt).
        settings: ``preview_every`` and ``preview_size``.
        release_due: Whether the worker's shutdown grace is spent (the job goes back).

    Returns:
        A callback that raises ``JobCanceledError``, ``FencedOutError`` or ``JobReleasedError``
        to end the render at this step.
    """
    job = running.job
    every = settings.preview_every
    # The pipeline decides when a preview is worth computing; this only thins them out so
    # that events carry at most one preview per ``every`` steps (and always the last one).
    last_preview = 0

    def on_step(step: int, total: int, preview: Image.Image | None) -> None:
        nonlocal last_preview
        running.stepped(time.monotonic())
        if running.fenced.is_set():
            raise FencedOutError(job.claim.job_id)
        if release_due():
            raise JobReleasedError(job.claim.job_id)
        preview_url = None
        if preview is not None and every and (step - last_preview >= every or step == total):
            preview_url = encode_preview(preview, settings.preview_size)
            last_preview = step
        outcome = queue.progress(job, step, total, preview_url)
        if outcome == "cancel":
            raise JobCanceledError(job.claim.job_id)
        if outcome == "fenced":
            raise FencedOutError(job.claim.job_id)

    return on_step
