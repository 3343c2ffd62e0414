"""How an attempt ends when it does not succeed: failed, retried or released, by what went wrong.

The kind of a render's failure (``failures.classify``) decides: a poisoned device releases the
job with its attempt refunded and stops the worker; out of memory and invalid jobs fail at once;
anything else is retried until the job's attempts are spent. The decision is per job: in a batch,
the step driver has already pinned a failed shared call on the render that caused it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from omost_renderer.config import Settings
from omost_renderer.job_queue.jobs import JobStatus
from omost_renderer.job_queue.worker_queue import StartedJob, WorkerQueue
from omost_renderer.worker.failures import FailureKind, classify
from omost_renderer.worker.health import BackgroundErrors
from omost_renderer.worker.job_watch import RunningJob, WatchVerdict

logger = logging.getLogger(__name__)


class JobEndings:
    """The queue writes that end an attempt other than by its result; thread-safe."""

    def __init__(
        self,
        queue: WorkerQueue,
        settings: Settings,
        errors: BackgroundErrors,
        on_device_lost: Callable[[], None],
        *,
        name: str,
    ) -> None:
        """End attempts through ``queue``.

        Args:
            queue: The worker's queue.
            settings: ``max_attempts`` and ``stall_after_s``.
            errors: Where failures of the render and the device are recorded.
            on_device_lost: Called once, at the first poisoned-device failure: stops the worker.
            name: The worker's name, for the logs.
        """
        self.queue = queue
        self.settings = settings
        self.errors = errors
        self.name = name
        self._on_device_lost = on_device_lost
        self._lock = threading.Lock()
        self._device_lost = False

    @property
    def device_lost(self) -> bool:
        """Whether a render poisoned this worker's device."""
        with self._lock:
            return self._device_lost

    def render_failed(self, job: StartedJob, error: Exception) -> FailureKind:
        """Decide from the kind of failure what happens to the job (and to this worker)."""
        job_id = job.claim.job_id
        message = f"{type(error).__name__}: {error}"
        kind = classify(error)
        if kind is FailureKind.POISONED_DEVICE:
            self._device_failed(job, error, message)
        elif kind is FailureKind.OUT_OF_MEMORY:
            logger.warning("job %s ran out of memory: %s", job_id, message)
            self.fail(job, "out_of_memory", message)
        elif kind is FailureKind.INVALID_JOB:
            logger.warning("job %s failed permanently: %s", job_id, message)
            self.fail(job, "invalid_job", str(error))
        else:
            logger.error(
                "job %s attempt %d failed: %s", job_id, job.attempt, message, exc_info=error
            )
            if job.attempt < int(self.settings.max_attempts):
                self.queue.requeue(job, refund=False, error_code="render_error", message=message)
            else:
                self.fail(job, "render_error", message)
        return kind

    def _device_failed(self, job: StartedJob, error: Exception, message: str) -> None:
        job_id = job.claim.job_id
        with self._lock:
            first, self._device_lost = not self._device_lost, True
        if not first:
            # A poisoned context fails every later call: the renders of the same batch that
            # failed after the first are not at fault; they go back without counting.
            logger.warning("worker %s: job %s failed on the lost device", self.name, job_id)
            self.queue.requeue(job, refund=True, error_code="device_error", message=message)
            return
        logger.critical(
            "worker %s: device poisoned by %s; releasing job %s", self.name, message, job_id
        )
        self.errors.record("device", error)
        # Stop first: whatever happens to the job below, this process takes no other.
        self._on_device_lost()
        if self.queue.count_device_release(job) > int(self.settings.max_attempts):
            # The same job poisoned every device it met: the job, not the device, is at fault.
            self.fail(job, "device_error", message)
        else:
            self.queue.requeue(job, refund=True, error_code="device_error", message=message)

    def fail(self, job: StartedJob, code: str, message: str) -> None:
        """Fail the job for good and dead-letter it."""
        fields = {"error_code": code, "error_message": message[:2000]}
        self.queue.finish(job, JobStatus.FAILED, fields, dead_letter=True)

    def release(self, job: StartedJob) -> None:
        """Give the job back to the queue, its attempt refunded (shutdown, a lost device)."""
        self.queue.requeue(job, refund=True, error_code="", message="")

    def release_stalled(self, running: RunningJob, verdict: WatchVerdict) -> None:
        """Give a stalled job to another worker (its attempt counts) or fail it when spent."""
        job = running.job
        reason = "stalled" if verdict is WatchVerdict.STALLED else "deadline_exceeded"
        message = (
            f"no step for {self.settings.stall_after_s:.0f}s"
            if verdict is WatchVerdict.STALLED
            else f"past the job's deadline of {running.deadline_s:.0f}s"
        )
        logger.error("worker %s: job %s %s; releasing it", self.name, job.claim.job_id, message)
        self.errors.record("render", f"job {job.claim.job_id}: {message}")
        if job.attempt < int(self.settings.max_attempts):
            self.queue.requeue(job, refund=False, error_code=reason, message=message)
        else:
            self.fail(job, reason, message)
