"""Renderers that fail the way GPUs do, or stall on cue, for the fault tests.

The faulty ones are loaded by worker subprocesses:

``OMOST_RENDERER_FACTORY=faulty_renderer:<factory>`` with this folder on ``PYTHONPATH``. Each one
fails only on canvases whose description contains its trigger word and draws the others like the
``FakeRenderer``, so one worker process can show that it keeps (or stops) taking jobs.
"""

from __future__ import annotations

import os
import threading

from fake_renderer import FakeRenderer
from omost_renderer.pipelines.rendering import RenderedImage, RenderParams, StepCallback
from omost_schema import Canvas

#: The message PyTorch raises after a kernel read out of bounds (a sticky CUDA error).
ILLEGAL_ADDRESS = (
    "CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call"
)


class FaultyRenderer(FakeRenderer):
    """Raises ``error`` (or hangs, when ``hang``) at step 2 of a canvas naming ``trigger``."""

    def __init__(self, trigger: str, error: BaseException | None, *, hang: bool = False) -> None:
        super().__init__(float(os.environ.get("OMOST_TEST_STEP_SLEEP_S", "0")))
        self.trigger = trigger
        self.error = error
        self.hang = hang
        self.released = threading.Event()

    def render(
        self, canvas: Canvas, params: RenderParams, on_step: StepCallback | None = None
    ) -> list[RenderedImage]:
        if self.trigger not in canvas.global_description.description:
            return super().render(canvas, params, on_step)
        self.calls += 1
        if on_step is not None:
            on_step(1, params.steps, None)
        if self.hang:
            self.released.wait()  # a kernel that never returns: no step, no exception
        if self.error is not None:
            raise self.error
        return super().render(canvas, params, on_step)


class HeldRenderer(FakeRenderer):
    """Stops after step ``hold_at`` until released; records what its step callback raised."""

    def __init__(self, hold_at: int) -> None:
        super().__init__()
        self.hold_at = hold_at
        self.holding = threading.Event()
        self.release = threading.Event()
        self.refused = threading.Event()

    def render(
        self, canvas: Canvas, params: RenderParams, on_step: StepCallback | None = None
    ) -> list[RenderedImage]:
        def held(step: int, total: int, preview: object) -> None:
            assert on_step is not None
            if step == self.hold_at + 1 and not self.holding.is_set():
                self.holding.set()
                assert self.release.wait(60)
            try:
                on_step(step, total, preview)  # type: ignore[arg-type]
            except Exception:
                self.refused.set()
                raise

        return super().render(canvas, params, held)


def build_poisoned() -> FaultyRenderer:
    """A render that poisons the CUDA context (an illegal memory access)."""
    return FaultyRenderer("bad-kernel", RuntimeError(ILLEGAL_ADDRESS))


def build_out_of_memory() -> FaultyRenderer:
    """A render too large for the device: PyTorch's own out-of-memory error."""
    import torch  # only here: the other factories start faster without it

    message = "CUDA out of memory. Tried to allocate 40.00 GiB (GPU 0; 23.65 GiB total capacity)"
    return FaultyRenderer("huge", torch.OutOfMemoryError(message))


def build_hanging() -> FaultyRenderer:
    """A render that hangs after its first step."""
    return FaultyRenderer("hang", None, hang=True)
