"""What the heartbeat knows of the jobs a worker holds: their progress, deadlines and fences.

A render proves it is alive by its steps. The heartbeat refreshes a job's claim only while its
render moves: with no step for ``stall_after_s`` (the wait before the first step and after the last
one count too), or once the job runs past its deadline, the job is released to another worker.
The record is per job, so a late answer about one job can never touch another; a worker holds
several at once (a batch being stepped, results being saved) in :class:`HeldJobs`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import Enum

from omost_renderer.config import Settings
from omost_renderer.job_queue.worker_queue import StartedJob
from omost_renderer.pipelines.rendering import RenderParams


def total_steps(params: RenderParams) -> int:
    """Denoising steps of a render: the base pass plus the hires pass when it is on."""
    return params.steps + (params.hires_steps if params.hires_scale > 1.0 else 0)


def job_deadline_s(params: RenderParams, settings: Settings) -> float:
    """Seconds a job may run: ``deadline_base_s`` plus ``deadline_step_s`` per step."""
    return settings.deadline_base_s + settings.deadline_step_s * total_steps(params)


class WatchVerdict(Enum):
    """What the heartbeat does with a running job."""

    #: Keep its claim fresh.
    ALIVE = "alive"
    #: No step for ``stall_after_s``: release it.
    STALLED = "stalled"
    #: Past its deadline: release it.
    PAST_DEADLINE = "past_deadline"
    #: Released already; nothing more to do.
    RELEASED = "released"
    #: Released, and the render still has not come back after ``stall_after_s`` more.
    HUNG = "hung"


@dataclass
class RunningJob:
    """One attempt of a job as this worker runs it (times from ``time.monotonic``).

    Attributes:
        job: The started attempt.
        started_at: When it started.
        deadline_s: Seconds it may run in all.
        last_step_at: When the render last made a step (or started).
        rendering: Whether the pipeline is running now (the stall watch applies).
        fenced: Set once this attempt is no longer the job's owner; its work is dropped.
        abandoned_at: When the heartbeat released it, if it did.
    """

    job: StartedJob
    started_at: float
    deadline_s: float
    last_step_at: float = 0.0
    rendering: bool = False
    fenced: threading.Event = field(default_factory=threading.Event)
    abandoned_at: float | None = None

    def __post_init__(self) -> None:
        self.last_step_at = self.last_step_at or self.started_at

    def stepped(self, now: float) -> None:
        """Note a denoising step."""
        self.last_step_at = now

    def abandon(self, now: float) -> None:
        """Mark the attempt released: its render, if it comes back, stops at its next step."""
        self.abandoned_at = now
        self.fenced.set()

    def verdict(self, now: float, stall_after_s: float) -> WatchVerdict:
        """Judge the job at ``now``."""
        if self.abandoned_at is not None:
            if self.rendering and now - self.abandoned_at > stall_after_s:
                return WatchVerdict.HUNG
            return WatchVerdict.RELEASED
        if self.rendering and now - self.last_step_at > stall_after_s:
            return WatchVerdict.STALLED
        if now - self.started_at > self.deadline_s:
            return WatchVerdict.PAST_DEADLINE
        return WatchVerdict.ALIVE


class HeldJobs:
    """The attempts a worker holds (rendering, or having their results saved); thread-safe.

    The job loop adds and removes them; the heartbeat thread watches a snapshot. An attempt stays
    held, so watched and fenced, until its final status is written.
    """

    def __init__(self) -> None:
        """Start with none held."""
        self._lock = threading.Lock()
        self._held: dict[int, RunningJob] = {}
        self._done = 0

    def add(self, running: RunningJob) -> None:
        """Hold ``running`` (watched by every heartbeat from now on)."""
        with self._lock:
            self._held[id(running)] = running

    def remove(self, running: RunningJob) -> bool:
        """Stop holding ``running`` and count it done; ``False`` if it was not held."""
        with self._lock:
            if self._held.pop(id(running), None) is None:
                return False
            self._done += 1
            return True

    def snapshot(self) -> list[RunningJob]:
        """The held attempts, oldest first."""
        with self._lock:
            return sorted(self._held.values(), key=lambda running: running.started_at)

    @property
    def done(self) -> int:
        """Attempts this worker let go since it started (finished, failed, released)."""
        with self._lock:
            return self._done

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)
