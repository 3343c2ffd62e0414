"""Deletion of old results: once per interval across the whole fleet, never per job.

Every worker looks once a minute (at most once per interval); a Redis lock held for the interval
(``omost:render:cleanup``) makes exactly one of them do the work. A failed cleanup is logged,
counted, shown in ``/ready``, and retried with backoff; it never stops the worker.
"""

from __future__ import annotations

import contextlib
import logging
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from omost_renderer.config import Settings
from omost_renderer.job_queue.worker_queue import WorkerQueue
from omost_renderer.storage.stores import ResultStore
from omost_renderer.worker.health import BackgroundErrors

logger = logging.getLogger(__name__)

#: Longest wait between two cleanup tries after failures.
MAX_BACKOFF_S = 300.0
#: Longest wait between two looks at the lock.
LOOK_EVERY_S = 60.0


class ResultsCleanup:
    """The cleanup duty of one worker."""

    def __init__(
        self, settings: Settings, queue: WorkerQueue, store: ResultStore, errors: BackgroundErrors
    ) -> None:
        """Clean ``store`` for the worker of ``queue``, recording failures in ``errors``."""
        self.settings = settings
        self.queue = queue
        self.store = store
        self.errors = errors
        self.next_look = 0.0
        self._backoff = 0.0

    def maybe_run(self) -> None:
        """Delete results older than ``job_ttl_s`` if it is this worker's turn; never raises."""
        now = time.monotonic()
        if now < self.next_look:
            return
        interval = self.settings.cleanup_interval_s
        self.next_look = now + min(LOOK_EVERY_S, interval)
        try:
            if not self.queue.take_cleanup_turn():
                return
            removed = self.store.cleanup(self.settings.job_ttl_s)
        except Exception as error:
            self._backoff = min(max(min(5.0, interval), self._backoff * 2), MAX_BACKOFF_S)
            self.next_look = now + self._backoff
            logger.warning(
                "worker %s: results cleanup failed (%s); retrying in %.0fs",
                self.queue.consumer,
                error,
                self._backoff,
            )
            self.errors.record("cleanup", error)
            # Free the turn so that a retry (here or elsewhere) need not wait for the interval.
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError, ResponseError):
                self.queue.give_up_cleanup_turn()
            return
        self._backoff = 0.0
        self.errors.clear("cleanup")
        if removed:
            logger.info("worker %s: cleanup deleted %d jobs' results", self.queue.consumer, removed)
