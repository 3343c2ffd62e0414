"""``process()``: Omost's colour sketch and regional conditions of a canvas.

The regions are what the renderer attends with: the global one first (mask all ones), then one
per local description, farthest first. The sketch is the coarse colour picture Omost can start
a render from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from omost_schema.geometry import GRID_SIZE, Rect
from omost_schema.vocab import COLORS

if TYPE_CHECKING:
    from omost_schema.canvas import Canvas, LocalDescription

#: Each local box is painted as this share of its colour over what is beneath it.
SKETCH_COLOR_WEIGHT = 0.7
_FULL_RECT = Rect(0, GRID_SIZE, 0, GRID_SIZE)


def clean_subprompt(text: str) -> str:
    """Omost's sub-prompt cleaning: strip leading/trailing ``,`` ``.`` and spaces, add one ``.``."""
    return text.strip(",. ") + "."


@dataclass(frozen=True)
class RegionCondition:
    """One region of the canvas as the renderer sees it.

    Attributes:
        mask: float32 (90, 90), 1.0 inside the region and 0.0 outside.
        prefixes: Sub-prompts that start every bag of this region.
        suffixes: Sub-prompts packed greedily into bags after the prefixes.
        rect: The box on the 90x90 grid (the full grid for the global region).
        color: RGB of the region's colour name.
        local_index: Position of the local description in the program; ``None`` for the global one.
    """

    mask: npt.NDArray[np.float32]
    prefixes: list[str]
    suffixes: list[str]
    rect: Rect
    color: tuple[int, int, int]
    local_index: int | None = None


@dataclass(frozen=True)
class ProcessedCanvas:
    """The result of ``Canvas.process()``.

    Attributes:
        initial_image: uint8 (90, 90, 3), the colour sketch.
        conditions: The global region first, then locals by descending ``distance_to_viewer``
            (ties keep program order).
    """

    initial_image: npt.NDArray[np.uint8]
    conditions: list[RegionCondition] = field(default_factory=list)


def sorted_locals(canvas: Canvas) -> list[tuple[int, LocalDescription]]:
    """Return ``(program_index, local)`` pairs farthest first; ties keep program order."""
    # sorted() is stable and keeps equal keys in input order even with reverse=True, as Omost does.
    return sorted(
        enumerate(canvas.local_descriptions),
        key=lambda pair: pair[1].distance_to_viewer,
        reverse=True,
    )


def _sketch_float(canvas: Canvas) -> npt.NDArray[np.float32]:
    # Omost's arithmetic to the last bit: the sketch is stored in float32; each blend adds the
    # colour term taken in float64 (0.7 times a uint8 colour) to the float32 product
    # 0.3 * box, in float64, and stores the sum back as float32. All-float32 blends truncate to
    # a different integer for some colours (blueviolet under darkkhaki gives 140 instead of 141).
    image = np.zeros((GRID_SIZE, GRID_SIZE, 3), dtype=np.float32)
    image += np.array(COLORS[canvas.global_description.HTML_web_color_name], dtype=np.uint8)
    below = np.float32(0.3)  # 1 - SKETCH_COLOR_WEIGHT, as Omost writes it
    for _, local in sorted_locals(canvas):
        top, bottom, left, right = local.rect
        color = SKETCH_COLOR_WEIGHT * np.array(COLORS[local.HTML_web_color_name], dtype=np.float64)
        box = image[top:bottom, left:right]
        image[top:bottom, left:right] = color + (below * box).astype(np.float64)
    return image


def _mask(rect: Rect) -> npt.NDArray[np.float32]:
    mask = np.zeros((GRID_SIZE, GRID_SIZE), dtype=np.float32)
    mask[rect.top : rect.bottom, rect.left : rect.right] = 1.0
    return mask


def process_canvas(canvas: Canvas) -> ProcessedCanvas:
    """Compute the colour sketch and the regional conditions of a canvas, exactly as Omost does.

    Args:
        canvas: A validated canvas.

    Returns:
        The sketch (uint8 90x90x3) and the regions, global first then farthest local first.
    """
    glob = canvas.global_description
    global_prefix = clean_subprompt(glob.description)
    conditions = [
        RegionCondition(
            mask=np.ones((GRID_SIZE, GRID_SIZE), dtype=np.float32),
            prefixes=[global_prefix],
            suffixes=[clean_subprompt(s) for s in [*glob.detailed_descriptions, glob.tags]],
            rect=_FULL_RECT,
            color=COLORS[glob.HTML_web_color_name],
        )
    ]
    for index, local in sorted_locals(canvas):
        texts = [
            *local.detailed_descriptions,
            local.tags,
            local.atmosphere,
            local.style,
            local.quality_meta,
        ]
        conditions.append(
            RegionCondition(
                mask=_mask(local.rect),
                prefixes=[global_prefix, clean_subprompt(local.description)],
                suffixes=[clean_subprompt(s) for s in texts],
                rect=local.rect,
                color=COLORS[local.HTML_web_color_name],
                local_index=index,
            )
        )
    # Truncation, not rounding, as numpy's cast does in Omost.
    sketch = _sketch_float(canvas).clip(0, 255).astype(np.uint8)
    return ProcessedCanvas(initial_image=sketch, conditions=conditions)
