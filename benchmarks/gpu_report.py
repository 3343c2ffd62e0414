"""The GPU suite's table: rows with their goals, printed and written to docs/benchmarks.md.

The suite owns one section of docs/benchmarks.md, from its ``## GPU suite`` heading to the next
``## `` heading; each run on a GPU replaces it whole (smoke runs on the CPU leave the docs alone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HEADING = "## GPU suite"
COMMAND = "make bench BENCH=gpu"


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
    return intro + table(rows) + ("\n" + body if body else "")


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
