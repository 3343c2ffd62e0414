"""The GPU suite's table: rows with their goals, printed and written to docs/benchmarks.md.

The suite owns one section of docs/benchmarks.md, from its ``## GPU suite`` heading to the next
``## `` heading; each run on a GPU replaces it whole (smoke runs on the CPU leave the docs alone).
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.gpu_models import SuiteScale

HEADING = "## GPU suite"
COMMAND = "make bench BENCH=gpu"
#: What the suite measures, kept in the docs section of every run.
MEASURES = """\
What it measures, in one process within `--budget-s` (default 480 s; a section that would not
fit is skipped and listed), on one H100/H200-class GPU:

- SDXL base shapes (UNet 2.6B, CLIP-L and OpenCLIP-bigG encoders, VAE), fp16 (VAE fp32), random
  weights built on the GPU, 896x1152, 25 steps, a canvas of a global and three local regions;
- the UNet alone, 25 evaluations with CFG: diffusers' plain processors (77 tokens, no regions)
  vs ours (batched guidance, regional) vs Omost's separate passes with materialised logits
  (`bench_attention.unet_bench`);
- a whole render: seconds, peak `torch.cuda.max_memory_allocated`, device syncs per step
  (`torch.cuda.set_sync_debug_mode("warn")` warnings counted), and the same render with separate
  guidance passes;
- 1, 2, 4 and 8 jobs arriving together, rendered one at a time vs stepped together by `StepBatch`
  (the worker's driver, the pipeline's `render_steps`/`denoise_batch`): images per minute and
  p50/p95 latency per job from the common arrival;
- each speed option applied at load to a fresh pipeline, as the worker does, against a fresh
  default one: `OMOST_RENDERER_CHANNELS_LAST`, `OMOST_RENDERER_FUSE_QKV`, then
  `OMOST_RENDERER_COMPILE` (first render with the compile, then the slower of two further
  renders, where a recompile would show);
- FLUX.1-dev shapes (transformer 12B, T5-XXL, CLIP-L), bfloat16, 1024x1024: regional (default
  schedule) vs diffusers' stock processors, 4 and 28 steps, and peak memory;
- FLUX.2 klein 4B shapes (transformer 4B, Qwen3-4B), bfloat16, 1024x1024, 4 steps: the same;
  for both, the regional render again with `OMOST_RENDERER_FUSE_QKV`.
"""


@dataclass(frozen=True)
class Row:
    """One measured figure.

    Attributes:
        measure: What was measured, in words.
        result: The figure with its unit, or ``None`` when not measured.
        goal: The goal it is held to ("" when none).
        met: Whether the goal is met (``None``: no goal, or not measured).
    """

    measure: str
    result: str | None
    goal: str = ""
    met: bool | None = None


def table(rows: list[Row]) -> str:
    """Markdown table of ``rows``; an unmeasured row reads "not measured"."""
    lines = ["| measure | result | goal | met |", "|---|---:|---|---|"]
    for row in rows:
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        lines.append(f"| {row.measure} | {row.result or 'not measured'} | {row.goal} | {met} |")
    return "\n".join(lines) + "\n"


def section(rows: list[Row], device: str, notes: list[str]) -> str:
    """The whole docs section: heading, how it was run, the table and the notes."""
    intro = (
        f"{HEADING}\n\n`{COMMAND}` (or `python -m benchmarks gpu`; on a machine without network:"
        " `scripts/gpu-wheels.sh` here, then `scripts/gpu-suite.sh` there) runs every GPU"
        " measurement in one process on full-size models with random weights, and rewrites"
        f" this section. Last run: {device}.\n\n"
    )
    body = "".join(f"- {note}\n" for note in notes)
    return intro + MEASURES + "\n" + table(rows) + ("\n" + body if body else "")


def replace_section(docs: Path, text: str) -> None:
    """Put ``text`` in place of the suite's section of ``docs`` (appended when absent)."""
    current = docs.read_text()
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    block = text.rstrip("\n") + "\n\n"
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + block
    docs.write_text(updated.rstrip("\n") + "\n")


def ratio_row(measure: str, value: float | None, goal: str, met: bool | None) -> Row:
    """A ratio row (``1.23x``)."""
    return Row(measure, None if value is None else f"{value:.2f}x", goal, met)


def seconds_row(measure: str, value: float | None, goal: str = "") -> Row:
    """A duration row (``1.234 s``)."""
    return Row(measure, None if value is None else f"{value:.3f} s", goal)


def mib_row(measure: str, value: float | None) -> Row:
    """A device-memory row (``1234 MiB``); ``None`` (CPU) reads "not measured"."""
    return Row(measure, None if value is None else f"{value:,.0f} MiB")


@dataclass
class Suite:
    """One run: its scale, its clock and what it found."""

    scale: SuiteScale
    budget_s: float
    started: float = field(default_factory=time.perf_counter)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Sections that raised, with their error (the run goes on and exits non-zero).
    failures: list[str] = field(default_factory=list)

    def left_s(self) -> float:
        """Seconds of the budget left."""
        return self.budget_s - (time.perf_counter() - self.started)

    def fits(self, name: str, needs_s: float) -> bool:
        """Whether a section estimated at ``needs_s`` fits; notes the skip when not."""
        if self.scale.smoke or self.left_s() >= needs_s:
            return True
        self.notes.append(f"{name}: skipped, {self.left_s():.0f} s of the budget left")
        return False

    def attempt(self, name: str, fn: Callable[[], object]) -> bool:
        """Run section ``name``; a failure is recorded (and printed), not raised.

        Returns:
            Whether it finished.
        """
        try:
            fn()
        except Exception as error:  # recorded in the table and the exit status, never hidden
            traceback.print_exc()
            self.failures.append(f"{name}: failed with {type(error).__name__}: {error}")
            return False
        return True

    def add(self, *rows: Row) -> None:
        """Record rows and print them as they come."""
        for row in rows:
            print(f"{row.measure}: {row.result or 'not measured'} {row.goal}", flush=True)
        self.rows.extend(rows)
