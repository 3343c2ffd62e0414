"""A worker's stop: once asked it takes no job, and the jobs it holds go back at ``release_at``.

SIGTERM asks with the shutdown grace: the held jobs may finish within it, then are released (their
attempts refunded). Asked twice, or with grace 0 (a poisoned device), the release is due at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class StopRequest:
    """A worker's stop: no job is taken once asked; held ones go back at ``release_at``."""

    stopping: threading.Event = field(default_factory=threading.Event)
    release_at: float | None = None

    def ask(self, grace_s: float) -> None:
        """Stop taking jobs; release the held ones after ``grace_s`` (asked twice: now)."""
        deadline = time.monotonic() + grace_s
        if self.stopping.is_set():
            deadline = time.monotonic()
        self.release_at = deadline if self.release_at is None else min(self.release_at, deadline)
        self.stopping.set()

    def release_due(self) -> bool:
        """Whether held jobs are to be given back now."""
        return self.release_at is not None and time.monotonic() >= self.release_at

    def left_s(self) -> float:
        """Seconds until the release (0 when due or not asked)."""
        return 0.0 if self.release_at is None else max(0.0, self.release_at - time.monotonic())
