"""The launcher restarts a worker that exits on purpose (lost device, hung render)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from omost_cli.local_stack import ManagedProcess, StackError, supervise

# Exits with ``code`` the first time (leaving a marker), then runs until stopped.
_CRASH_ONCE = (
    "import os, sys, time\n"
    "marker = sys.argv[1]\n"
    "if not os.path.exists(marker):\n"
    "    open(marker, 'w').close()\n"
    "    sys.exit(int(sys.argv[2]))\n"
    "time.sleep(60)\n"
)


def _process(tmp_path: Path, code: int, *, restart: bool) -> ManagedProcess:
    argv = [sys.executable, "-c", _CRASH_ONCE, str(tmp_path / "crashed"), str(code)]
    return ManagedProcess("worker", argv, dict(os.environ), restart=restart)


def _wait_exit(process: ManagedProcess) -> int:
    assert process.popen is not None
    return process.popen.wait(timeout=30)


def test_supervise_restarts_a_worker_that_lost_its_device(tmp_path: Path) -> None:
    process = _process(tmp_path, 3, restart=True)
    process.start()
    try:
        assert _wait_exit(process) == 3
        supervise([process])
        time.sleep(0.2)
        assert process.exit_code() is None  # running again
        assert len(process.restarts) == 1
    finally:
        process.stop(grace_s=1)


def test_supervise_gives_up_on_a_configuration_error(tmp_path: Path) -> None:
    process = _process(tmp_path, 2, restart=True)
    process.start()
    assert _wait_exit(process) == 2
    with pytest.raises(StackError, match="worker exited with code 2"):
        supervise([process])
    assert process.restarts == []


def test_supervise_stops_the_stack_when_a_service_dies(tmp_path: Path) -> None:
    process = _process(tmp_path, 3, restart=False)
    process.start()
    assert _wait_exit(process) == 3
    with pytest.raises(StackError, match="exited with code 3"):
        supervise([process])


def test_supervise_gives_up_after_too_many_crashes_in_the_window(tmp_path: Path) -> None:
    process = _process(tmp_path, 4, restart=True)
    process.start()
    assert _wait_exit(process) == 4
    process.restarts = [time.monotonic()] * 5  # five recent restarts already
    with pytest.raises(StackError, match="exited with code 4"):
        supervise([process])
