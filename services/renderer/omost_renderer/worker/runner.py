"""The render worker: one process per GPU, the pipeline loaded once, up to ``max_batch`` jobs held.

A worker reads its model's job stream as one consumer of the group and steps the jobs it holds
together (``batch_loop``); their results are saved off the loop (``result_saving``). A heartbeat
thread re-claims the entry of every job it holds (resetting its idle time) and refreshes the
worker's health key and counters; entries left idle longer than ``reclaim_after_s`` (a dead
worker's) are taken over by any worker. The heartbeat follows each render's progress: a render
with no step for ``stall_after_s``, or past its deadline, has its job released to another worker
(see ``job_watch``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from omost_renderer.config import Settings
from omost_renderer.job_queue import constants
from omost_renderer.job_queue.worker_queue import WorkerQueue, ensure_group
from omost_renderer.pipelines.family_params import family_params_of
from omost_renderer.pipelines.rendering import CanvasRenderer
from omost_renderer.storage.cleanup import ResultsCleanup
from omost_renderer.storage.stores import ResultStore
from omost_renderer.worker.health import REDIS_ERRORS, BackgroundErrors, error_counter_field
from omost_renderer.worker.job_endings import JobEndings
from omost_renderer.worker.job_watch import HeldJobs, RunningJob, WatchVerdict
from omost_renderer.worker.render_counters import RenderCounters
from omost_renderer.worker.stop_request import StopRequest

if TYPE_CHECKING:
    from omost_renderer.worker.batch_loop import BatchLoop

logger = logging.getLogger(__name__)

_MAX_BACKOFF_S = 5.0
#: Exit status of a worker whose device is poisoned (its supervisor restarts it).
EXIT_DEVICE_LOST = 3
#: Exit status of a worker whose render hung and did not come back after its job was released.
EXIT_RENDER_HUNG = 4


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
        self.store = store
        self.name = name or settings.worker_name or default_worker_name()
        self.queue = WorkerQueue(redis, settings, self.name)
        self.errors = BackgroundErrors()
        self.exit_code = 0
        self._exit_process = exit_process
        self._stop = StopRequest()
        self._exited = threading.Event()
        self._started_at = time.time()
        # Imported here: the batch loop needs torch (the step driver), and this module also
        # serves the health probe (``worker --check``), which must start in well under a second.
        from omost_renderer.worker.batch_loop import BatchLoop

        self.held = HeldJobs()
        self.endings = JobEndings(
            self.queue, settings, self.errors, self._device_lost, name=self.name
        )
        self.loop: BatchLoop = BatchLoop(
            settings,
            renderer,
            self.queue,
            store,
            self.held,
            self.endings,
            self._stop,
            self._beat_once,
            name=self.name,
        )
        self.counters = RenderCounters(lambda: self.loop.batch, lambda: self.loop.renderer)
        self.cleanup = ResultsCleanup(settings, self.queue, store, self.errors)
        self._family = family_params_of(renderer)

    @property
    def renderer(self) -> CanvasRenderer:
        """The pipeline (it may be replaced only while no job is rendering)."""
        return self.loop.renderer

    @renderer.setter
    def renderer(self, renderer: CanvasRenderer) -> None:
        self.loop.renderer = renderer

    @property
    def jobs_done(self) -> int:
        """Attempts this worker has let go of (finished, failed or released)."""
        return self.held.done

    def stop(self, grace_s: float | None = None) -> None:
        """Stop taking jobs; finish the held ones within ``grace_s``, else release them."""
        self._stop.ask(self.settings.shutdown_grace_s if grace_s is None else grace_s)

    def _device_lost(self) -> None:
        self.exit_code = EXIT_DEVICE_LOST
        # Grace 0: every other job this worker holds goes back at the loop's next turn.
        self.stop(grace_s=0)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        logger.info("worker %s got signal %d: stopping", self.name, signum)
        self.stop()

    def run(self, *, install_signals: bool = True) -> int:
        """Run jobs until ``stop`` (or SIGTERM/SIGINT when ``install_signals``).

        A stopping worker takes no more jobs, steps the ones it holds until they end or its grace
        is spent (then releases them) and waits for its pending result saves.

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
        while not (self._stop.stopping.is_set() and not self.loop.busy):
            try:
                if not group_ready:
                    ensure_group(self.queue.redis, self.queue.stream)
                    group_ready = True
                self.cleanup.maybe_run()
                self.loop.turn()
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
        self.loop.saver.close()
        self._exited.set()
        beater.join(timeout=5.0)
        try:
            self.queue.clear_health()
        except REDIS_ERRORS:
            logger.warning("worker %s: could not clear its health key", self.name)
        return self.exit_code

    def _queue_failed(self, error: Exception, backoff: float) -> float:
        """Log and count a failed queue operation, wait, and return the next backoff."""
        logger.warning("worker %s: redis failed (%s); retrying in %.1fs", self.name, error, backoff)
        self.errors.record("queue", error)
        if not self._stop.stopping.is_set():
            self._stop.stopping.wait(backoff)
        elif self._stop.release_due():
            # Stopping, and Redis cannot take the held jobs back: they are reclaimed instead.
            self.loop.abandon()
        else:
            time.sleep(min(backoff, self._stop.left_s()))
        return min(backoff * 2, _MAX_BACKOFF_S)

    def run_once(self) -> bool:
        """Take the entries that fit, render them to the end and save their results.

        Returns:
            Whether there was an entry.
        """
        return self.loop.run_once()

    def _heartbeat_loop(self) -> None:
        while not self._exited.wait(self.settings.heartbeat_interval_s):
            try:
                self._beat()
                self.errors.clear("heartbeat")
            except Exception as error:
                # The heartbeat thread must outlive any failure: a dead heartbeat would let the
                # running jobs be reclaimed and the worker look alive to nobody.
                logger.warning("worker %s: heartbeat failed (%s)", self.name, error)
                self.errors.record("heartbeat", error)

    def _beat(self) -> None:
        """Refresh the held jobs' claims (or release stalled ones), the counters, the health key."""
        held = self.held.snapshot()
        for running in held:
            self._watch(running)
        job_ids = [running.job.claim.job_id for running in held]
        info = {
            "pid": os.getpid(),
            "started_at": self._started_at,
            "jobs_done": self.jobs_done,
            "job": job_ids[0] if job_ids else None,
            "jobs": job_ids,
            "max_batch": self.loop.batch.max_jobs,
            "text_cache": self.counters.text_cache_sizes(),
            "errors": self.errors.snapshot(),
            # What the API lists in GET /v1/models and checks requests against.
            "model": self.settings.model,
            "family": self._family.family,
            "capabilities": self._family.capabilities(),
        }
        counts = self.errors.take_unreported()
        deltas = self.counters.take()
        fields = {error_counter_field(name): count for name, count in counts.items()}
        try:
            self.queue.add_counters({**fields, **deltas})
        except BaseException:
            self.errors.give_back(counts)
            self.counters.give_back(deltas)
            raise
        self.queue.beat_health(info)

    def _beat_once(self) -> None:
        try:
            self._beat()
        except REDIS_ERRORS as error:
            logger.warning("worker %s: heartbeat failed (%s)", self.name, error)
            self.errors.record("heartbeat", error)

    def _watch(self, running: RunningJob) -> None:
        """One heartbeat of a held job: refresh its claim, or release it if it stalled."""
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
            self.endings.release_stalled(running, verdict)
            return
        if verdict is WatchVerdict.RELEASED or running.fenced.is_set():
            return
        if not self.queue.heartbeat(running.job):
            # Fenced for this job only: the worker's other jobs have their own records.
            running.fenced.set()


def check_health(settings: Settings) -> bool:
    """Return whether a worker (this one, when ``worker_name`` is set) is alive, for probes."""
    redis = connect(settings)
    try:
        if settings.worker_name:
            return bool(redis.exists(constants.worker_health_key(settings.worker_name)))
        # The workers set is scored by when each health key expires: no SCAN of the keyspace.
        return bool(redis.zcount(constants.WORKERS_KEY, time.time(), "+inf"))
    except REDIS_ERRORS:
        return False
    finally:
        redis.close()
