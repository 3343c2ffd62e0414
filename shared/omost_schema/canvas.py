"""The Canvas model: what an Omost model writes, as validated data.

Field names are exactly the keyword arguments of Omost's ``Canvas`` methods, so a canvas reads the
same as JSON and as Omost code. Text is kept as written; the cleaning Omost applies to sub-prompts
happens in ``process()``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from omost_schema.geometry import Rect, region_rect
from omost_schema.limits import (
    MAX_DETAILED_DESCRIPTIONS,
    MAX_DISTANCE_TO_VIEWER,
    MAX_LOCAL_DESCRIPTIONS,
    MAX_TAGS_CHARS,
    MAX_TEXT_CHARS,
)
from omost_schema.vocab import Area, ColorName, Location, Offset

if TYPE_CHECKING:
    from omost_schema.conditions import ProcessedCanvas

# Control characters never belong in a prompt and would break the printed code's one-line strings.
_NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS, pattern=_NO_CONTROL_CHARS)]
Tags = Annotated[str, StringConstraints(max_length=MAX_TAGS_CHARS, pattern=_NO_CONTROL_CHARS)]
DetailedDescriptions = Annotated[list[Text], Field(max_length=MAX_DETAILED_DESCRIPTIONS)]
Distance = Annotated[float, Field(gt=0, le=MAX_DISTANCE_TO_VIEWER, allow_inf_nan=False)]


class GlobalDescription(BaseModel):
    """The whole image: ``Canvas.set_global_description(...)``."""

    model_config = ConfigDict(extra="forbid")

    description: Text
    detailed_descriptions: DetailedDescriptions
    tags: Tags
    HTML_web_color_name: ColorName


class LocalDescription(BaseModel):
    """One part of the image: ``Canvas.add_local_description(...)``, in Omost's argument order."""

    model_config = ConfigDict(extra="forbid")

    location: Location
    offset: Offset
    area: Area
    distance_to_viewer: Distance
    description: Text
    detailed_descriptions: DetailedDescriptions
    tags: Tags
    atmosphere: Text
    style: Text
    quality_meta: Text
    HTML_web_color_name: ColorName

    @property
    def rect(self) -> Rect:
        """The box on the 90x90 grid, ``(top, bottom, left, right)``."""
        return region_rect(self.location, self.offset, self.area)


class Canvas(BaseModel):
    """A complete Omost canvas: one global description and its local descriptions."""

    model_config = ConfigDict(extra="forbid")

    global_description: GlobalDescription
    local_descriptions: Annotated[
        list[LocalDescription], Field(max_length=MAX_LOCAL_DESCRIPTIONS)
    ] = Field(default_factory=list)

    @classmethod
    def from_code(cls, text: str, *, strict: bool = False) -> Canvas:
        """Parse Omost code (or a whole model answer holding it) into a canvas, never running it.

        Args:
            text: Bare code, or prose with a fenced python block, as Omost models answer.
            strict: Accept only exact names and a complete program; no repairs.

        Returns:
            The canvas. Use ``omost_schema.parse_code`` to also get the corrections made.

        Raises:
            CanvasCodeError: If the code is not a canvas program (with line and column).
        """
        from omost_schema.code_parser import parse_code

        result = parse_code(text, strict=strict)
        for correction in result.corrections:
            logging.getLogger(__name__).warning(
                "corrected Omost code at line %s: %s %r -> %r",
                correction.line,
                correction.kind,
                correction.original,
                correction.corrected,
            )
        return result.canvas

    def to_code(self) -> str:
        """Print the canvas as Omost code, keyword arguments as the models write them."""
        from omost_schema.code_printer import canvas_to_code

        return canvas_to_code(self)

    def process(self) -> ProcessedCanvas:
        """Compute Omost's colour sketch and the ordered regions (see ``conditions``)."""
        from omost_schema.conditions import process_canvas

        return process_canvas(self)
