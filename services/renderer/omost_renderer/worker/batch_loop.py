"""The worker's job loop: up to ``max_batch`` jobs held in a ``StepBatch`` and stepped together.

Each turn lets go of the jobs the heartbeat released (or all of them, once a stopping worker's
grace is spent), takes entries into the free slots, and makes one step. Entries come as today's
single-job worker took them (a dead worker's, by ``XAUTOCLAIM``, once per heartbeat; then new
ones by ``XREADGROUP``), as many as there are free slots; the read blocks only when the worker
holds no render, so a rendering worker never waits for work. Each entry is started (the START
script: its attempt, its fencing token) and primed into the batch, where it joins at the next step
boundary; a job leaves when its own schedule ends. A finished render goes to the ``ResultSaver``
and the loop goes on. A renderer without ``render_steps`` cannot share a step, so it holds one job
whatever ``max_batch`` says: its whole render runs when it is primed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from omost_renderer.config import Settings
from omost_renderer.edits.render_inputs import load_start
from omost_renderer.errors import FencedOutError, JobCanceledError, JobReleasedError
from omost_renderer.job_queue import constants
from omost_renderer.job_queue.jobs import JobRequest, JobStatus
from omost_renderer.job_queue.worker_queue import Claim, WorkerQueue
from omost_renderer.pipelines.render_start import RenderStart
from omost_renderer.pipelines.rendering import CanvasRenderer, StepCallback
from omost_renderer.pipelines.step_batch import (
    BatchingRenderer,
    JobOutcome,
    RenderSteps,
    StepBatch,
    plain_render_steps,
)
from omost_renderer.storage.stores import ResultStore
from omost_renderer.worker.health import REDIS_ERRORS
from omost_renderer.worker.job_endings import JobEndings
from omost_renderer.worker.job_watch import HeldJobs, RunningJob, job_deadline_s
from omost_renderer.worker.result_saving import FinishedRender, ResultSaver
from omost_renderer.worker.step_progress import step_callback
from omost_renderer.worker.stop_request import StopRequest

logger = logging.getLogger(__name__)


@dataclass
class _Rendering:
    running: RunningJob
    #: ``None`` when the request could not be read (the render ends with that error).
    request: JobRequest | None


class BatchLoop:
    """Takes, starts, steps and ends the jobs of one worker; used by the worker's thread only."""

    def __init__(
        self,
        settings: Settings,
        renderer: CanvasRenderer,
        queue: WorkerQueue,
        store: ResultStore,
        held: HeldJobs,
        endings: JobEndings,
        stop: StopRequest,
        beat: Callable[[], None],
        *,
        name: str,
    ) -> None:
        """Prepare the loop; the saver's threads start with the first save.

        Args:
            settings: ``max_batch``, ``block_ms``, the deadlines and previews.
            renderer: The pipeline; batched when it has ``render_steps``.
            queue: The worker's queue.
            store: Where results (and an edit's start) are.
            held: The attempts the heartbeat watches.
            endings: Ends attempts that did not succeed.
            stop: The worker's stop request.
            beat: One heartbeat, after a job starts (it must not raise).
            name: The worker's name, for the logs.
        """
        self.settings = settings
        self.queue = queue
        self.store = store
        self.held = held
        self.endings = endings
        self.stop = stop
        self.name = name
        self._beat = beat
        self._renderer = renderer
        self.batch = StepBatch(self._batching(renderer), self._capacity(renderer))
        self._rendering: dict[str, _Rendering] = {}
        self._next_reclaim = 0.0
        self.saver = ResultSaver(store, queue, endings.errors, endings, self._saved, name=name)

    @property
    def renderer(self) -> CanvasRenderer:
        """The pipeline."""
        return self._renderer

    @renderer.setter
    def renderer(self, renderer: CanvasRenderer) -> None:
        if len(self.batch):
            raise RuntimeError("the renderer can only change while no job is rendering")
        self._renderer = renderer
        self.batch = StepBatch(self._batching(renderer), self._capacity(renderer))

    def _capacity(self, renderer: CanvasRenderer) -> int:
        return int(self.settings.max_batch) if isinstance(renderer, BatchingRenderer) else 1

    @staticmethod
    def _batching(renderer: CanvasRenderer) -> BatchingRenderer:
        # A plain renderer's renders never yield a model call, so ``denoise_batch`` is never
        # asked of it: the driver needs only the batching renderer's side of the protocol then.
        return renderer  # type: ignore[return-value]

    @property
    def busy(self) -> bool:
        """Whether renders are in the batch."""
        return len(self.batch) > 0

    def turn(self) -> bool:
        """One turn: let go of released jobs, fill the free slots, make one step.

        Returns:
            Whether an entry was taken.

        Raises:
            A Redis error (the loop backs off); what was held stays held or pending.
        """
        self._let_go_released()
        took = self._fill()
        if self.busy:
            self._ended(self.batch.step())
        return took

    def run_once(self) -> bool:
        """Take what fits, render it to the end and wait until its results are saved."""
        self._let_go_released()
        took = self._fill()
        while self.busy:
            self._ended(self.batch.step())
            self._let_go_released()
        self.saver.wait()
        return took

    def abandon(self) -> None:
        """Drop every render without a write (Redis is away): the entries are reclaimed."""
        for key in list(self._rendering):
            logger.warning("worker %s: abandoning job %s", self.name, key)
            self._drop(key)

    def _fill(self) -> bool:
        free = self.batch.free
        if free <= 0 or self.stop.stopping.is_set():
            return False
        claims = self._claims(free)
        if not claims:
            return False
        if self.stop.stopping.is_set():
            # Stopped while waiting for the entries (a signal does not interrupt the blocking
            # read): a stopping worker starts nothing, so they go to the next worker.
            for claim in claims:
                self.queue.hand_back(claim)
                logger.info("worker %s: stopping; handed back job %s", self.name, claim.job_id)
            return False
        first = True
        for claim in claims:
            if self._admit(claim, beat=first):
                first = False
        return True

    def _claims(self, free: int) -> list[Claim]:
        if time.monotonic() >= self._next_reclaim:
            # Looking for dead workers' entries costs a round trip; once per heartbeat is enough
            # (they are only taken after RECLAIM_AFTER_S), unless the last look found one.
            claim = self.queue.reclaim()
            if claim is not None:
                return [claim]
            self._next_reclaim = time.monotonic() + self.settings.heartbeat_interval_s
        return self.queue.read_entries(free, None if self.busy else self.settings.block_ms)

    def _admit(self, claim: Claim, *, beat: bool) -> bool:
        """Start the claimed job and prime it into the batch; ``False`` if nothing started."""
        job = self.queue.start(claim)
        if job is None:
            return False
        waited = max(0.0, time.time() - job.enqueued_at)
        self.queue.observe("wait", constants.WAIT_BUCKETS_S, waited)
        running = RunningJob(job, time.monotonic(), deadline_s=self.settings.deadline_base_s)
        self.held.add(running)
        if beat:
            self._beat()
        key = f"{job.claim.job_id}/{job.attempt}"
        try:
            request = JobRequest.model_validate_json(job.request_json)
            running.deadline_s = job_deadline_s(request.params, self.settings)
            running.stepped(time.monotonic())
            start = load_start(request, self.store)
            on_step = step_callback(running, self.queue, self.settings, self.stop.release_due)
            steps = self._render_steps(request, start, on_step)
        except Exception as error:
            self._rendering[key] = _Rendering(running, None)
            self._ended([JobOutcome(key, error=error)])
            return True
        self._rendering[key] = _Rendering(running, request)
        running.rendering = True
        outcome = self.batch.add(key, steps)
        if outcome is not None:
            self._ended([outcome])
        return True

    def _render_steps(
        self, request: JobRequest, start: RenderStart | None, on_step: StepCallback
    ) -> RenderSteps:
        renderer = self._renderer
        if start is not None and not getattr(renderer, "supports_start", False):
            raise ValueError("this worker's renderer cannot start from an edit or an init image")
        if isinstance(renderer, BatchingRenderer):
            return renderer.render_steps(request.canvas, request.params, on_step, start=start)
        return plain_render_steps(renderer, request.canvas, request.params, on_step, start=start)

    def _ended(self, outcomes: list[JobOutcome]) -> None:
        """Settle each render that left the batch; a Redis failure is raised after all of them."""
        failure: Exception | None = None
        for outcome in outcomes:
            rendering = self._rendering.pop(outcome.job_id)
            rendering.running.rendering = False
            try:
                self._settle(rendering, outcome)
            except REDIS_ERRORS as error:
                # The entry stays pending: let go, it is reclaimed once Redis is back.
                self.held.remove(rendering.running)
                failure = failure or error
        if failure is not None:
            raise failure

    def _settle(self, rendering: _Rendering, outcome: JobOutcome) -> None:
        running = rendering.running
        job = running.job
        job_id = job.claim.job_id
        error = outcome.error
        if error is None and running.fenced.is_set():
            error = FencedOutError(job_id)
        if error is None:
            # Only a render whose request was read gets to run, so this one has it.
            assert rendering.request is not None
            images = outcome.images or []
            self.saver.submit(FinishedRender(running, rendering.request, images))
            return  # held until saved
        if isinstance(error, REDIS_ERRORS):
            raise error
        if isinstance(error, JobCanceledError):
            self.queue.finish(job, JobStatus.CANCELED, {})
        elif isinstance(error, FencedOutError):
            self._log_taken_over(running)
        elif isinstance(error, JobReleasedError):
            self.endings.release(job)
        else:
            self.endings.render_failed(job, error)
        self._let_go(running)

    def _let_go_released(self) -> None:
        """Drop the renders the heartbeat released, or all of them once the grace is spent."""
        release_all = self.stop.release_due()
        for key, rendering in list(self._rendering.items()):
            running = rendering.running
            if running.fenced.is_set():
                self._drop(key)
                self._log_taken_over(running)
            elif release_all:
                self._drop(key)
                self.endings.release(running.job)
                logger.info("worker %s: stopping; released job %s", self.name, key)

    def _log_taken_over(self, running: RunningJob) -> None:
        job = running.job
        how = "was released" if running.abandoned_at is not None else "was taken over"
        logger.warning(
            "worker %s: job %s attempt %d %s", self.name, job.claim.job_id, job.attempt, how
        )

    def _drop(self, key: str) -> None:
        rendering = self._rendering.pop(key)
        self.batch.drop(key)
        rendering.running.rendering = False
        self.held.remove(rendering.running)

    def _let_go(self, running: RunningJob) -> None:
        if self.held.remove(running):
            self.queue.observe(
                "run", constants.RUN_BUCKETS_S, time.monotonic() - running.started_at
            )

    def _saved(self, running: RunningJob) -> None:
        """The saver let go of ``running`` (from its thread): stop watching it."""
        try:
            self._let_go(running)
        except REDIS_ERRORS as error:
            logger.warning("worker %s: redis failed (%s)", self.name, error)
            self.endings.errors.record("queue", error)
