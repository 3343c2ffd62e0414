"""Count the machine's NVIDIA GPUs without importing torch (the launcher stays light)."""

from __future__ import annotations

import os
import shutil
import subprocess


def count_gpus() -> int:
    """Return how many NVIDIA GPUs this process may use (0 when there is no driver).

    ``CUDA_VISIBLE_DEVICES`` is honoured when set; otherwise ``nvidia-smi -L`` is asked.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listing = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))
