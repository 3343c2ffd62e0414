"""Saving finished renders off the step loop: PNG encoding, storing, the job's final status.

The job loop hands a finished render to :class:`ResultSaver` and goes on stepping its other jobs
(or starts the next one) while a small thread pool encodes the images, stores them with the files
a later edit needs, and writes the job's final status (the FINISH script). The attempt stays held
(heartbeat, fencing) until then. A failure there is logged, counted and decided as a render's
(retried or failed); a Redis failure leaves the entry pending, to be reclaimed.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from omost_renderer.edits.render_inputs import kept_for_edits
from omost_renderer.errors import FencedOutError
from omost_renderer.job_queue.jobs import ImageRecord, JobRequest, JobStatus
from omost_renderer.job_queue.worker_queue import WorkerQueue
from omost_renderer.pipelines.rendering import RenderedImage
from omost_renderer.storage.stores import ResultStore, image_key
from omost_renderer.worker.health import REDIS_ERRORS, BackgroundErrors
from omost_renderer.worker.job_endings import JobEndings
from omost_renderer.worker.job_watch import RunningJob

logger = logging.getLogger(__name__)

#: Threads encoding and storing results. PNG encoding (zlib) and uploads release the GIL, so two
#: keep up with a GPU's results without taking the job loop's core.
SAVE_THREADS = 2
#: Renders being saved or waiting for a thread; past it the job loop waits. Each holds its
#: full-size images and latents in memory: at the request budget (4 megapixels) about 50 MB.
MAX_PENDING_SAVES = 4
#: Tries of storing one file, with backoff (0.5 s doubling, at most 8 s between tries).
STORE_TRIES = 6


@dataclass(frozen=True)
class FinishedRender:
    """A render that ended with its images, to be saved."""

    running: RunningJob
    request: JobRequest
    images: list[RenderedImage]


class ResultSaver:
    """A bounded pool that saves finished renders; ``submit`` waits while it is full."""

    def __init__(
        self,
        store: ResultStore,
        queue: WorkerQueue,
        errors: BackgroundErrors,
        endings: JobEndings,
        on_saved: Callable[[RunningJob], None],
        *,
        name: str,
    ) -> None:
        """Prepare the pool (its threads start with the first save).

        Args:
            store: Where result files go.
            queue: Writes the job's final status.
            errors: Where storage and queue failures are recorded.
            endings: Decides the job's fate when saving fails.
            on_saved: Called with the attempt once it is let go (saved, failed or fenced),
                from a pool thread; it must not raise.
            name: The worker's name, for the logs.
        """
        self.store = store
        self.queue = queue
        self.errors = errors
        self.endings = endings
        self.name = name
        self._on_saved = on_saved
        self._slots = threading.BoundedSemaphore(MAX_PENDING_SAVES)
        self._idle = threading.Condition()
        self._pending = 0
        self._pool = ThreadPoolExecutor(SAVE_THREADS, thread_name_prefix="result-saver")

    def submit(self, render: FinishedRender) -> None:
        """Queue ``render`` for saving; waits while ``MAX_PENDING_SAVES`` are pending."""
        self._slots.acquire()
        with self._idle:
            self._pending += 1
        try:
            future = self._pool.submit(self._save, render)
        except BaseException:
            self._saved()
            raise
        future.add_done_callback(self._check)

    def _check(self, future: Future[None]) -> None:
        error = future.exception()
        if error is not None:
            # ``_save`` catches everything; this would be a defect, still never silent.
            logger.error("worker %s: saving a result failed: %r", self.name, error)
            self.errors.record("storage", error)

    def _saved(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()
        self._slots.release()

    def pending(self) -> int:
        """Renders queued or being saved."""
        with self._idle:
            return self._pending

    def wait(self) -> None:
        """Wait until every submitted render is saved (or has failed)."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0)

    def close(self) -> None:
        """Wait for the pending saves and stop the pool's threads."""
        self.wait()
        self._pool.shutdown(wait=True)

    def _save(self, render: FinishedRender) -> None:
        running = render.running
        job = running.job
        try:
            self._succeed(render)
        except REDIS_ERRORS as error:
            # The entry stays pending; once let go it is no longer heartbeated and is reclaimed.
            logger.warning(
                "worker %s: redis failed saving job %s (%s)", self.name, job.claim.job_id, error
            )
            self.errors.record("queue", error)
        except FencedOutError:
            logger.warning(
                "worker %s: job %s attempt %d was taken over",
                self.name,
                job.claim.job_id,
                job.attempt,
            )
        except Exception as error:
            self._failed(render, error)
        finally:
            try:
                self._on_saved(running)
            finally:
                self._saved()

    def _failed(self, render: FinishedRender, error: Exception) -> None:
        try:
            self.endings.render_failed(render.running.job, error)
        except REDIS_ERRORS as redis_error:
            logger.warning("worker %s: redis failed (%s)", self.name, redis_error)
            self.errors.record("queue", redis_error)

    def _succeed(self, render: FinishedRender) -> None:
        running, images = render.running, render.images
        job = running.job
        job_id = job.claim.job_id
        # What a later edit needs (canvas, parameters, latents), beside the images.
        kept, latent_keys = kept_for_edits(job_id, job.attempt, render.request, images)
        for key, data in kept:
            self._store(running, key, data)
        records: list[dict[str, object]] = []
        for n, rendered in enumerate(images):
            buffer = io.BytesIO()
            rendered.image.save(buffer, format="PNG")
            key = image_key(job_id, job.attempt, n)
            self._store(running, key, buffer.getvalue())
            record = ImageRecord(n=n, seed=rendered.seed, key=key, latents_key=latent_keys[n])
            records.append(record.model_dump())
        fields = {
            "images": json.dumps(records),
            "render_record": kept[0][0],
            "error_code": "",
            "error_message": "",
        }
        if not self.queue.finish(job, JobStatus.SUCCEEDED, fields):
            # A newer attempt owns the job: its result is the only one that may exist.
            self._discard(f"{job_id}/{job.attempt}")

    def _store(self, running: RunningJob, key: str, data: bytes) -> None:
        """Store one file, retrying with backoff; the job stays claimed meanwhile."""
        delay = 0.5
        for attempt in range(1, STORE_TRIES + 1):
            if running.fenced.is_set():
                raise FencedOutError(running.job.claim.job_id)
            try:
                self.store.put(key, data)
            except Exception as error:
                logger.warning("worker %s: storing %s failed (%s)", self.name, key, error)
                self.errors.record("storage", error)
                if attempt == STORE_TRIES:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
            else:
                self.errors.clear("storage")
                return

    def _discard(self, prefix: str) -> None:
        try:
            self.store.delete_prefix(prefix)
        except Exception as error:
            # Left behind, the files are removed by the cleanup with the job's other results.
            logger.warning("worker %s: could not delete %s (%s)", self.name, prefix, error)
            self.errors.record("storage", error)
