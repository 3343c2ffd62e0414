"""The render worker: one process per GPU, the pipeline loaded once, jobs run one at a time.

A worker reads the job stream as one consumer of the group. While it runs a job, a heartbeat
thread re-claims the job's entry (resetting its idle time) and refreshes the worker's health key;
entries left idle longer than ``reclaim_after_s`` (a dead worker's) are taken over by any worker.
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
from types import FrameType

from PIL import Image
from pydantic import ValidationError
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from omost_renderer import constants
from omost_renderer.config import Settings
from omost_renderer.errors import FencedOutError, JobCanceledError, JobReleasedError
from omost_renderer.jobs import ImageRecord, JobRequest, JobStatus
from omost_renderer.rendering import CanvasRenderer, RenderedImage, StepCallback
from omost_renderer.storage import ResultStore, image_key
from omost_renderer.worker_queue import Claim, StartedJob, WorkerQueue, ensure_group

logger = logging.getLogger(__name__)

_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
#: Errors that a retry cannot fix: the job is failed and dead-lettered at once.
_PERMANENT = (ValueError, TypeError, ValidationError)
_MAX_BACKOFF_S = 5.0


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
    ) -> None:
        """Prepare a worker; nothing runs until ``run``."""
        self.settings = settings
        self.renderer = renderer
        self.store = store
        self.name = name or settings.worker_name or default_worker_name()
        self.queue = WorkerQueue(redis, settings, self.name)
        self.jobs_done = 0
        self._stopping = threading.Event()
        self._exited = threading.Event()
        self._release_at: float | None = None
        self._current: StartedJob | None = None
        self._fenced = False
        self._started_at = time.time()
        self._next_reclaim = 0.0

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

    def run(self, *, install_signals: bool = True) -> None:
        """Run jobs until ``stop`` (or SIGTERM/SIGINT when ``install_signals``)."""
        if install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        beater = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beater.start()
        backoff = 0.1
        next_cleanup = 0.0
        group_ready = False
        while not self._stopping.is_set():
            try:
                if not group_ready:
                    ensure_group(self.queue.redis)
                    group_ready = True
                if time.monotonic() >= next_cleanup:
                    self.store.cleanup(self.settings.job_ttl_s)
                    next_cleanup = time.monotonic() + max(60.0, self.settings.job_ttl_s / 10)
                self.run_once()
                backoff = 0.1
            except ResponseError as error:
                if not str(error).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                # Redis came back empty (no persistence) or was flushed: create the group again.
                logger.warning("worker %s: consumer group missing; recreating it", self.name)
                group_ready = False
            except _REDIS_DOWN as error:
                # Redis is down or restarting: keep trying; pending entries wait to be reclaimed.
                logger.warning("worker %s: redis unavailable (%s); retrying", self.name, error)
                group_ready = False
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
        self._exited.set()
        beater.join(timeout=5.0)
        try:
            self.queue.clear_health()
        except _REDIS_DOWN:
            logger.warning("worker %s: could not clear its health key", self.name)

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
        self._process(claim)
        return True

    def _heartbeat_loop(self) -> None:
        while not self._exited.wait(self.settings.heartbeat_interval_s):
            self._beat()

    def _beat(self) -> None:
        current = self._current
        try:
            if current is not None and not self.queue.heartbeat(current):
                self._fenced = True
            info = {
                "pid": os.getpid(),
                "started_at": self._started_at,
                "jobs_done": self.jobs_done,
                "job": current.claim.job_id if current else None,
            }
            self.queue.beat_health(info)
        except _REDIS_DOWN as error:
            logger.warning("worker %s: heartbeat failed (%s)", self.name, error)

    def _process(self, claim: Claim) -> None:
        job = self.queue.start(claim)
        if job is None:
            return
        started = time.time()
        self.queue.observe("wait", constants.WAIT_BUCKETS_S, max(0.0, started - job.enqueued_at))
        self._fenced = False
        self._current = job
        self._beat()
        try:
            self._run(job)
        finally:
            self._current = None
            self.jobs_done += 1
        self.queue.observe("run", constants.RUN_BUCKETS_S, time.time() - started)

    def _run(self, job: StartedJob) -> None:
        job_id = job.claim.job_id
        try:
            request = JobRequest.model_validate_json(job.request_json)
            images = self.renderer.render(request.canvas, request.params, self._on_step(job))
            self._succeed(job, images)
        except _REDIS_DOWN:
            raise  # the entry stays pending and is reclaimed once Redis is back
        except JobCanceledError:
            self.queue.finish(job, JobStatus.CANCELED, {})
        except FencedOutError:
            logger.warning(
                "worker %s: job %s attempt %d was taken over", self.name, job_id, job.attempt
            )
        except JobReleasedError:
            self.queue.requeue(job, refund=True, error_code="", message="")
        except _PERMANENT as error:
            logger.warning("job %s failed permanently: %s", job_id, error)
            self._fail(job, "invalid_job", str(error))
        except Exception as error:
            # A crash of the pipeline may be transient (out of memory, a driver hiccup): retry.
            logger.exception("job %s attempt %d failed", job_id, job.attempt)
            message = f"{type(error).__name__}: {error}"
            if job.attempt < int(self.settings.max_attempts):
                self.queue.requeue(job, refund=False, error_code="render_error", message=message)
            else:
                self._fail(job, "render_error", message)

    def _fail(self, job: StartedJob, code: str, message: str) -> None:
        fields = {"error_code": code, "error_message": message[:2000]}
        self.queue.finish(job, JobStatus.FAILED, fields, dead_letter=True)

    def _succeed(self, job: StartedJob, images: list[RenderedImage]) -> None:
        job_id = job.claim.job_id
        records: list[dict[str, object]] = []
        for n, rendered in enumerate(images):
            buffer = io.BytesIO()
            rendered.image.save(buffer, format="PNG")
            key = image_key(job_id, job.attempt, n)
            self.store.put(key, buffer.getvalue())
            records.append(ImageRecord(n=n, seed=rendered.seed, key=key).model_dump())
        fields = {"images": json.dumps(records), "error_code": "", "error_message": ""}
        if not self.queue.finish(job, JobStatus.SUCCEEDED, fields):
            # A newer attempt owns the job: its result is the only one that may exist.
            self.store.delete_prefix(f"{job_id}/{job.attempt}")

    def _on_step(self, job: StartedJob) -> StepCallback:
        every = self.settings.preview_every
        # The pipeline decides when a preview is worth computing; this only thins them out so
        # that events carry at most one preview per ``every`` steps (and always the last one).
        last_preview = 0

        def on_step(step: int, total: int, preview: Image.Image | None) -> None:
            nonlocal last_preview
            if self._fenced:
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
        return any(True for _ in redis.scan_iter(match=f"{constants.WORKER_HEALTH_KEY_PREFIX}*"))
    except _REDIS_DOWN:
        return False
    finally:
        redis.close()
