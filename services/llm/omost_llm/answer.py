"""Omost-style answers: a sentence plus a fenced python block, and what changed between canvases."""

from __future__ import annotations

from omost_schema import Canvas, CanvasCodeError, parse_code
from omost_schema.diff import RegionChange as RegionChange  # re-exported for the serving layer
from omost_schema.diff import diff_canvases

ANSWER_SENTENCE = "Here is the canvas, as Omost code:\n\n"
ANSWER_PREFIX = ANSWER_SENTENCE + "```python\n"
ANSWER_SUFFIX = "```"


def closing_fence(code: str) -> str:
    """What follows ``code`` to close the fenced block (a newline first if the code lacks one)."""
    return ANSWER_SUFFIX if code.endswith("\n") else "\n" + ANSWER_SUFFIX


def fenced_tail(block: str) -> str:
    """What completes a model's fenced block: nothing if it ends with its fence, else the fence.

    Constrained code mode generates the whole block, fences included; a block that stopped
    early (a stop string) still leaves the service closed.
    """
    return "" if block.endswith(ANSWER_SUFFIX) else closing_fence(block)


def fenced_block(code: str) -> str:
    """Omost code as the models write it: one fenced python block."""
    return f"```python\n{code}{closing_fence(code)}"


def wrap_code(code: str) -> str:
    """Put Omost code into the answer layout Omost's tools read: a sentence and a fenced block."""
    return ANSWER_SENTENCE + fenced_block(code)


def changed_regions(previous: Canvas | None, current: Canvas) -> list[RegionChange]:
    """Regions of ``current`` that differ from ``previous`` (the diff the renderer edits with).

    Local descriptions are matched by position; ``omost_schema.diff`` has the details (the
    fields and aspects that changed, the old and new boxes).

    Args:
        previous: The canvas being edited, or ``None`` for a new canvas (everything is added).
        current: The new canvas.

    Returns:
        The changes, the global region first.
    """
    return diff_canvases(previous, current)


def canvas_from_answer(text: str) -> Canvas | None:
    """The canvas in an earlier assistant answer (Omost code or canvas JSON), or ``None``.

    Earlier answers come back from clients as they were sent (or edited by people), so they are
    read leniently; an answer without a canvas is simply not a canvas to edit.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return Canvas.model_validate_json(stripped)
        except ValueError:
            return None
    try:
        return parse_code(text, strict=False).canvas
    except (CanvasCodeError, ValueError):
        return None
