"""The render worker: one process per GPU, the pipeline loaded once, jobs run one at a time.

A worker reads the job stream as one consumer of the group. While it runs a job, a heartbeat
thread re-claims the job's entry (resetting its idle time) and refreshes the worker's health key;
entries left idle longer than ``reclaim_after_s`` (a dead worker's) are taken over by any worker.
The heartbeat follows the render's progress: a render with no step for ``stall_after_s``, or past
its deadline, has its job released to another worker (see ``job_watch``).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType

from PIL import Image
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from omost_renderer.config import Settings
from omost_renderer.edits.render_inputs import kept_for_edits, load_start
from omost_renderer.errors import FencedOutError, JobCanceledError, JobReleasedError
from omost_renderer.job_queue import constants
from omost_renderer.job_queue.jobs import ImageRecord, JobRequest, JobStatus
from omost_renderer.job_queue.worker_queue import Claim, StartedJob, WorkerQueue, ensure_group
from omost_renderer.pipelines.family_params import family_params_of
from omost_renderer.pipelines.render_start import StartingRenderer
from omost_renderer.pipelines.rendering import CanvasRenderer, RenderedImage, StepCallback
from omost_renderer.storage.cleanup import ResultsCleanup
from omost_renderer.storage.stores import ResultStore, image_key
from omost_renderer.worker.failures import FailureKind, classify
from omost_renderer.worker.health import BackgroundErrors
from omost_renderer.worker.job_watch import RunningJob, WatchVerdict, job_deadline_s

logger = logging.getLogger(__name__)

#: Every failure of Redis itself: unreachable, or answering an error (full: ``OOM``, read-only).
_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ResponseError)
_MAX_BACKOFF_S = 5.0
#: Exit status of a worker whose device is poisoned (its supervisor restarts it).
EXIT_DEVICE_LOST = 3
#: Exit status of a worker whose render hung and did not come back after its job was released.
EXIT_RENDER_HUNG = 4
#: Tries of storing one result image, with backoff (0.5 s doubling, at most 8 s between tries).
STORE_TRIES = 6


def default_worker_name() -> str:
    """Return ``<host>-<pid>``, unique per worker process."""
    return f"{socket.gethostname()}-{os.getpid()}"


def connect(settings: Settings) -> Redis:
    """Open the worker's Redis client; commands time out rather than hang on a dead server."""
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=settings.block_ms / 1000 + 5.0,
        health_check_interval=30,
    )


def encode_preview(preview: Image.Image, size: int) -> str:
    """Return a small JPEG of ``preview`` as a ``data:`` URL."""
    small = preview.convert("RGB")
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Worker:
    """Runs jobs from the stream with one renderer until asked to stop."""

    def __init__(
        self,
        settings: Settings,
        renderer: CanvasRenderer,
        redis: Redis,
        store: ResultStore,
        *,
        name: str | None = None,
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        """Prepare a worker; nothing runs until ``run``.

        Args:
            settings: The service settings.
            renderer: The pipeline, loaded once.
            redis: A synchronous client with ``decode_responses=True``.
            store: Where result images go.
            name: Consumer name; ``worker_name`` or ``<host>-<pid>`` when unset.
            exit_process: Ends the process when a hung render cannot be stopped otherwise
                (``os._exit``; tests that run workers in threads pass a recorder).
        """
        self.settings = settings
        self.renderer = renderer
        self.store = store
        self.name = name or settings.worker_name or default_worker_name()
        self.queue = WorkerQueue(redis, settings, self.name)
        self.errors = BackgroundErrors()
        self.jobs_done = 0
        self.exit_code = 0
        self._exit_process = exit_process
        self._stopping = threading.Event()
        self._exited = threading.Event()
        self._release_at: float | None = None
        self._running: RunningJob | None = None
        self._started_at = time.time()
        self._next_reclaim = 0.0
        self.cleanup = ResultsCleanup(settings, self.queue, store, self.errors)
        self._family = family_params_of(renderer)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop taking jobs; finish the current one within ``grace_s``, else release it."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        if self._stopping.is_set():
            deadline = time.monotonic()  # asked twice: release now
        self._release_at = deadline if self._release_at is None else min(self._release_at, deadline)
        self._stopping.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        logger.info("worker %s got signal %d: stopping", self.name, signum)
        self.stop()

    def run(self, *, install_signals: bool = True) -> int:
        """Run jobs until ``stop`` (or SIGTERM/SIGINT when ``install_signals``).

        Returns:
            The process exit status: 0 after a stop, ``EXIT_DEVICE_LOST`` when the device failed.
        """
        if install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        beater = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beater.start()
        backoff = 0.1
        group_ready = False
        while not self._stopping.is_set():
            try:
                if not group_ready:
                    ensure_group(self.queue.redis, self.queue.stream)
                    group_ready = True
                self.cleanup.maybe_run()
                self.run_once()
                self.errors.clear("queue")
                backoff = 0.1
            except ResponseError as error:
                if str(error).startswith(("NOGROUP", "UNBLOCKED")):
                    # Redis came back empty (no persistence) or was flushed: create the group.
                    logger.warning("worker %s: consumer group missing; recreating it", self.name)
                    group_ready = False
                    continue
                backoff = self._queue_failed(error, backoff)
            except (RedisConnectionError, RedisTimeoutError) as error:
                # Redis is down or restarting: keep trying; pending entries wait to be reclaimed.
                group_ready = False
                backoff = self._queue_failed(error, backoff)
        self._exited.set()
        beater.join(timeout=5.0)
        try:
            self.queue.clear_health()
        except _REDIS_ERRORS:
            logger.warning("worker %s: could not clear its health key", self.name)
        return self.exit_code

    def _queue_failed(self, error: Exception, backoff: float) -> float:
        """Log and count a failed queue operation, wait, and return the next backoff."""
        logger.warning("worker %s: redis failed (%s); retrying in %.1fs", self.name, error, backoff)
        self.errors.record("queue", error)
        self._stopping.wait(backoff)
        return min(backoff * 2, _MAX_BACKOFF_S)

    def run_once(self) -> bool:
        """Claim and process at most one entry; return whether there was one."""
        claim = None
        if time.monotonic() >= self._next_reclaim:
            # Looking for dead workers' entries costs a round trip; once per heartbeat is enough
            # (they are only taken after RECLAIM_AFTER_S), unless the last look found one.
            claim = self.queue.reclaim()
            if claim is None:
                self._next_reclaim = time.monotonic() + self.settings.heartbeat_interval_s
        claim = claim or self.queue.read_new(self.settings.block_ms)
        if claim is None:
            return False
        if self._stopping.is_set():
            # Stopped while waiting for the entry (a signal does not interrupt the blocking
            # read): a stopping worker starts nothing, so the entry goes to the next worker.
            self.queue.hand_back(claim)
            logger.info("worker %s: stopping; handed back job %s", self.name, claim.job_id)
            return False
        self._process(claim)
        return True

    def _heartbeat_loop(self) -> None:
        while not self._exited.wait(self.settings.heartbeat_interval_s):
            try:
                self._beat()
                self.errors.clear("heartbeat")
            except Exception as error:
                # The heartbeat thread must outlive any failure: a dead heartbeat would let the
                # running job be reclaimed and the worker look alive to nobody.
                logger.warning("worker %s: heartbeat failed (%s)", self.name, error)
                self.errors.record("heartbeat", error)

    def _beat(self) -> None:
        """Refresh the running job's claim (or release it when stalled) and the health key."""
        running = self._running
        if running is not None:
            self._watch(running)
        counts = self.errors.take_unreported()
        info = {
            "pid": os.getpid(),
            "started_at": self._started_at,
            "jobs_done": self.jobs_done,
            "job": running.job.claim.job_id if running else None,
            "errors": self.errors.snapshot(),
            # What the API lists in GET /v1/models and checks requests against.
            "model": self.settings.model,
            "family": self._family.family,
            "capabilities": self._family.capabilities(),
        }
        try:
            self.queue.count_errors(counts)
            self.queue.beat_health(info)
        except BaseException:
            self.errors.give_back(counts)
            raise

    def _watch(self, running: RunningJob) -> None:
        """One heartbeat of a running job: refresh its claim, or release it if it stalled."""
        verdict = running.verdict(time.monotonic(), self.settings.stall_after_s)
        if verdict is WatchVerdict.HUNG:
            logger.critical(
                "worker %s: the render of job %s did not come back %.0fs after its release;"
                " exiting",
                self.name,
                running.job.claim.job_id,
                self.settings.stall_after_s,
            )
            try:
                self.queue.clear_health()
            finally:
                self._exit_process(EXIT_RENDER_HUNG)
            return
        if verdict in (WatchVerdict.STALLED, WatchVerdict.PAST_DEADLINE):
            running.abandon(time.monotonic())
            self._release_stalled(running, verdict)
            return
        if verdict is WatchVerdict.RELEASED or running.fenced.is_set():
            return
        if not self.queue.heartbeat(running.job):
            # Fenced for this job only: a later job of this worker has its own record.
            running.fenced.set()

    def _release_stalled(self, running: RunningJob, verdict: WatchVerdict) -> None:
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
            self._fail(job, reason, message)

    def _process(self, claim: Claim) -> None:
        job = self.queue.start(claim)
        if job is None:
            return
        started = time.time()
        self.queue.observe("wait", constants.WAIT_BUCKETS_S, max(0.0, started - job.enqueued_at))
        running = RunningJob(job, time.monotonic(), deadline_s=self.settings.deadline_base_s)
        self._running = running
        try:
            self._beat_once()
            self._run(running)
        finally:
            self._running = None
            self.jobs_done += 1
        self.queue.observe("run", constants.RUN_BUCKETS_S, time.time() - started)

    def _beat_once(self) -> None:
        try:
            self._beat()
        except _REDIS_ERRORS as error:
            logger.warning("worker %s: heartbeat failed (%s)", self.name, error)
            self.errors.record("heartbeat", error)

    def _run(self, running: RunningJob) -> None:
        job = running.job
        job_id = job.claim.job_id
        try:
            request = JobRequest.model_validate_json(job.request_json)
            running.deadline_s = job_deadline_s(request.params, self.settings)
            running.stepped(time.monotonic())
            start = load_start(request, self.store)
            running.rendering = True
            try:
                if start is None:
                    images = self.renderer.render(
                        request.canvas, request.params, self._on_step(running)
                    )
                else:
                    images = self._starting_renderer().render(
                        request.canvas, request.params, self._on_step(running), start=start
                    )
            finally:
                running.rendering = False
            if running.fenced.is_set():
                raise FencedOutError(job_id)
            self._succeed(running, request, images)
        except _REDIS_ERRORS:
            raise  # the entry stays pending and is reclaimed once Redis is back
        except JobCanceledError:
            self.queue.finish(job, JobStatus.CANCELED, {})
        except FencedOutError:
            logger.warning(
                "worker %s: job %s attempt %d was taken over", self.name, job_id, job.attempt
            )
        except JobReleasedError:
            self.queue.requeue(job, refund=True, error_code="", message="")
        except Exception as error:
            self._render_failed(job, error)

    def _render_failed(self, job: StartedJob, error: Exception) -> None:
        """Decide from the kind of failure what happens to the job and to this worker."""
        job_id = job.claim.job_id
        message = f"{type(error).__name__}: {error}"
        kind = classify(error)
        if kind is FailureKind.POISONED_DEVICE:
            logger.critical(
                "worker %s: device poisoned by %s; releasing job %s", self.name, message, job_id
            )
            self.errors.record("device", error)
            # Stop first: whatever happens to the job below, this process takes no other.
            self.exit_code = EXIT_DEVICE_LOST
            self.stop(grace_s=0)
            if self.queue.count_device_release(job) > int(self.settings.max_attempts):
                # The same job poisoned every device it met: the job, not the device, is at fault.
                self._fail(job, "device_error", message)
            else:
                self.queue.requeue(job, refund=True, error_code="device_error", message=message)
        elif kind is FailureKind.OUT_OF_MEMORY:
            logger.warning("job %s ran out of memory: %s", job_id, message)
            self._fail(job, "out_of_memory", message)
        elif kind is FailureKind.INVALID_JOB:
            logger.warning("job %s failed permanently: %s", job_id, message)
            self._fail(job, "invalid_job", str(error))
        else:
            logger.error(
                "job %s attempt %d failed: %s", job_id, job.attempt, message, exc_info=error
            )
            if job.attempt < int(self.settings.max_attempts):
                self.queue.requeue(job, refund=False, error_code="render_error", message=message)
            else:
                self._fail(job, "render_error", message)

    def _fail(self, job: StartedJob, code: str, message: str) -> None:
        fields = {"error_code": code, "error_message": message[:2000]}
        self.queue.finish(job, JobStatus.FAILED, fields, dead_letter=True)

    def _starting_renderer(self) -> StartingRenderer:
        """The renderer, when it can start from an edit's base or an init image."""
        if not getattr(self.renderer, "supports_start", False):
            raise ValueError("this worker's renderer cannot start from an edit or an init image")
        return self.renderer  # type: ignore[return-value]

    def _succeed(
        self, running: RunningJob, request: JobRequest, images: list[RenderedImage]
    ) -> None:
        job = running.job
        job_id = job.claim.job_id
        # What a later edit needs (canvas, parameters, latents), beside the images.
        kept, latent_keys = kept_for_edits(job_id, job.attempt, request, images)
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
        """Store one image, retrying with backoff; the job stays claimed meanwhile."""
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

    def _on_step(self, running: RunningJob) -> StepCallback:
        job = running.job
        every = self.settings.preview_every
        # The pipeline decides when a preview is worth computing; this only thins them out so
        # that events carry at most one preview per ``every`` steps (and always the last one).
        last_preview = 0

        def on_step(step: int, total: int, preview: Image.Image | None) -> None:
            nonlocal last_preview
            running.stepped(time.monotonic())
            if running.fenced.is_set():
                raise FencedOutError(job.claim.job_id)
            if self._release_at is not None and time.monotonic() >= self._release_at:
                raise JobReleasedError(job.claim.job_id)
            preview_url = None
            if preview is not None and every and (step - last_preview >= every or step == total):
                preview_url = encode_preview(preview, self.settings.preview_size)
                last_preview = step
            outcome = self.queue.progress(job, step, total, preview_url)
            if outcome == "cancel":
                raise JobCanceledError(job.claim.job_id)
            if outcome == "fenced":
                raise FencedOutError(job.claim.job_id)

        return on_step


def check_health(settings: Settings) -> bool:
    """Return whether a worker (this one, when ``worker_name`` is set) is alive, for probes."""
    redis = connect(settings)
    try:
        if settings.worker_name:
            return bool(redis.exists(constants.worker_health_key(settings.worker_name)))
        # The workers set is scored by when each health key expires: no SCAN of the keyspace.
        return bool(redis.zcount(constants.WORKERS_KEY, time.time(), "+inf"))
    except _REDIS_ERRORS:
        return False
    finally:
        redis.close()
