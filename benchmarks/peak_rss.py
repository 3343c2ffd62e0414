"""Peak resident memory of one call, measured in a fresh process (Linux ``/proc``)."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

import torch


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith(field + ":"))
    return int(line.split()[1])


def _peak_child(
    build: Callable[..., Callable[[], Any]], args: tuple[Any, ...], threads: int, out: Any
) -> None:
    torch.set_num_threads(threads)
    call = build(*args)
    # Reset the peak-RSS mark (VmHWM) so only this call's growth is measured.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    with torch.inference_mode():
        call()
    out.put((_status_kib("VmHWM") - before) / 1024)


def peak_mib(build: Callable[..., Callable[[], Any]], args: tuple[Any, ...], threads: int) -> float:
    """Peak RSS growth (MiB) of a fresh process running one call; building the call is excluded.

    Args:
        build: A module-level function (picklable for ``spawn``) that builds the inputs and
            returns the call to measure.
        args: Arguments of ``build``.
        threads: Torch CPU threads in the child.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(build, args, threads, queue))
    proc.start()
    peak: float = queue.get()
    proc.join()
    return peak
