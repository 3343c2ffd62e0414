"""Run the whole system on one machine: Redis, the LLM service, the renderer API and workers.

Children run in their own process groups so Ctrl-C reaches only the launcher, which then stops
them in reverse order: workers first (they finish or release their job), Redis last.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from omost_cli.stack_plan import StackPlan

_STOP_GRACE_S = 20.0
_POLL_S = 0.5
#: Exit status of a worker whose settings are wrong: restarting it cannot help.
_EXIT_CONFIGURATION = 2
#: A restartable process may be restarted this many times within ``_RESTART_WINDOW_S`` ...
_MAX_RESTARTS = 5
_RESTART_WINDOW_S = 600.0
#: ... waiting this long before the first restart, doubling each time after.
_RESTART_BACKOFF_S = 1.0


class StackError(RuntimeError):
    """The stack could not be started or a part of it died."""


@dataclass
class ManagedProcess:
    """A child process of the stack."""

    name: str
    argv: list[str]
    env: dict[str, str]
    #: Restart after a crash (workers exit non-zero on purpose when their device is lost or a
    #: render hangs, and expect a supervisor to start them again, as compose and Kubernetes do).
    restart: bool = False
    popen: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        """Start the process in its own process group."""
        self.popen = subprocess.Popen(self.argv, env=self.env, start_new_session=True)

    def restart_delay_s(self, now: float) -> float | None:
        """Seconds to wait before restarting after a crash, or ``None`` when it must not restart.

        Args:
            now: ``time.monotonic()`` of the crash.

        Returns:
            The backoff before the next restart; ``None`` for a process that is not restartable,
            exited with a configuration error, or crashed too often within the restart window.
        """
        code = self.exit_code()
        if not self.restart or code in (None, 0, _EXIT_CONFIGURATION):
            return None
        recent = [t for t in self.restarts if now - t < _RESTART_WINDOW_S]
        if len(recent) >= _MAX_RESTARTS:
            return None
        return _RESTART_BACKOFF_S * (1 << len(recent))

    def exit_code(self) -> int | None:
        """Return the exit code, or ``None`` while it runs."""
        return None if self.popen is None else self.popen.poll()

    def stop(self, grace_s: float = _STOP_GRACE_S) -> None:
        """Send SIGTERM, wait up to ``grace_s``, then SIGKILL."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_port_free(host: str, port: int, setting: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise StackError(
                f"port {port} on {host} is in use: set {setting} to another port"
            ) from None


def _executable(name: str) -> str:
    # Prefer the command installed beside this Python (the project's .venv).
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not installed: run `make install` first")
    return found


def _redis_process(plan: StackPlan, port: int) -> ManagedProcess:
    redis_dir = plan.data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        _executable("redis-server"),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(redis_dir),
        # Durable queue: every accepted job survives a restart; never evict job data.
        "--appendonly", "yes",
        "--save", "",
        "--maxmemory-policy", "noeviction",
    ]  # fmt: skip
    return ManagedProcess("redis", argv, dict(os.environ))


def _cpu_threads_each(busy_processes: int) -> str:
    # Torch in two busy processes, each with as many threads as cores, runs many times slower
    # than with the cores shared out; OMP_NUM_THREADS is what torch reads at start-up.
    return str(max(1, (os.cpu_count() or 1) // busy_processes))


def build_processes(plan: StackPlan, redis_url: str) -> list[ManagedProcess]:
    """Return the service processes in start order (LLM, renderer API, then workers)."""
    env = {**os.environ, **plan.env, "OMOST_REDIS_URL": redis_url}
    if plan.gpus == 0:
        # The LLM and every worker share the cores.
        env.setdefault("OMP_NUM_THREADS", _cpu_threads_each(1 + len(plan.models)))
    processes = [
        ManagedProcess(
            "llm",
            [_executable("omost-llm"), "serve", "--host", plan.host, "--port", str(plan.llm_port)],
            env,
        ),
        ManagedProcess(
            "renderer-api",
            [
                _executable("omost-renderer"),
                "api",
                "--host",
                plan.host,
                "--port",
                str(plan.renderer_port),
            ],
            env,
        ),
    ]
    worker = _executable("omost-renderer")
    several = len(plan.models) > 1
    if plan.gpus == 0:
        # One worker per model, each loading only its own model.
        for model in plan.models:
            name = f"worker-{model}" if several else "worker"
            model_env = {**env, "OMOST_RENDERER_MODEL": model}
            processes.append(ManagedProcess(name, [worker, "worker"], model_env, restart=True))
    for gpu in range(plan.gpus):
        # One worker per GPU, each seeing only its own device; the models take turns.
        model = plan.models[gpu % len(plan.models)]
        gpu_env = {**env, "CUDA_VISIBLE_DEVICES": str(gpu), "OMOST_RENDERER_MODEL": model}
        name = f"worker-gpu{gpu}-{model}" if several else f"worker-gpu{gpu}"
        processes.append(ManagedProcess(name, [worker, "worker"], gpu_env, restart=True))
    return processes


def _wait_ready(url: str, name: str, processes: list[ManagedProcess], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_report = 0.0
    while time.monotonic() < deadline:
        _raise_if_dead(processes)
        try:
            if httpx.get(f"{url}/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() - last_report > 15:
            print(
                f"  waiting for {name} at {url} (loading models may take a while) ...", flush=True
            )
            last_report = time.monotonic()
        time.sleep(_POLL_S)
    raise StackError(f"{name} was not ready after {timeout_s:.0f} s")


def _raise_if_dead(processes: list[ManagedProcess]) -> None:
    for process in processes:
        code = process.exit_code()
        if code is not None:
            raise StackError(f"{process.name} exited with code {code}")


def supervise(processes: list[ManagedProcess]) -> None:
    """Restart crashed restartable processes (with backoff); raise when anything else died.

    Args:
        processes: The running stack.

    Raises:
        StackError: A process that is not restartable exited, or a restartable one exited with a
            configuration error or crashed more than ``_MAX_RESTARTS`` times in the window.
    """
    for process in processes:
        code = process.exit_code()
        if code is None:
            continue
        now = time.monotonic()
        delay = process.restart_delay_s(now)
        if delay is None:
            raise StackError(f"{process.name} exited with code {code}")
        print(
            f"  {process.name} exited with code {code}; restarting it in {delay:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(delay)
        process.restarts.append(now)
        process.start()


def _announce(plan: StackPlan) -> None:
    if plan.uses_cpu_defaults:
        bar = "!" * 78
        print(
            f"{bar}\n!! NO GPU FOUND: running the CPU models. The LLM is a small bundled model"
            "\n!! (weak canvases); the renderer serves a tiny RANDOM-WEIGHT SDXL (`tiny`, the"
            "\n!! default) and FLUX.1 (`tiny-flux`) side by side: images are noise."
            f"\n!! On a GPU machine the real Omost model and RealVisXL are used.\n{bar}",
            flush=True,
        )
    else:
        print(f"GPUs: {plan.gpus}; models download on first start.", flush=True)


def run_stack(plan: StackPlan, ready_timeout_s: float = 3600.0) -> int:
    """Start everything, print the URLs, and run until Ctrl-C or a child dies.

    Args:
        plan: The resolved settings.
        ready_timeout_s: How long to wait for each HTTP service's ``/ready``.

    Returns:
        The exit code for the launcher: 0 after Ctrl-C, 1 when something failed.
    """
    _announce(plan)
    _check_port_free(plan.host, plan.llm_port, "OMOST_LLM_PORT")
    _check_port_free(plan.host, plan.renderer_port, "OMOST_RENDERER_PORT")
    processes: list[ManagedProcess] = []
    if plan.redis_url is None:
        port = free_port()
        processes.append(_redis_process(plan, port))
        redis_url = f"redis://127.0.0.1:{port}/0"
    else:
        redis_url = plan.redis_url

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        processes += build_processes(plan, redis_url)
        for process in processes:
            process.start()
        _wait_ready(plan.llm_url, "the LLM service", processes, ready_timeout_s)
        _wait_ready(plan.renderer_url, "the renderer API", processes, ready_timeout_s)
        print(
            f"\nomost-serve is running:\n"
            f"  web page         {plan.renderer_url}/\n"
            f"  renderer API     {plan.renderer_url}/v1/renders\n"
            f"  models           {', '.join(plan.models)}\n"
            f"  LLM service      {plan.llm_url}/v1/chat/completions\n"
            f"  redis            {redis_url}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while True:
            supervise(processes)
            time.sleep(_POLL_S)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except StackError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        for process in reversed(processes):
            process.stop()
        signal.signal(signal.SIGTERM, previous)
