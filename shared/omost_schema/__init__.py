"""omost_schema: the Omost canvas as data, its exact geometry, and a safe parser of Omost code.

Both services and any other app import this package; it depends on pydantic, numpy and Pillow only.
"""

from omost_schema.bags import greedy_bags, greedy_partition
from omost_schema.canvas import Canvas, GlobalDescription, LocalDescription
from omost_schema.code_parser import Correction, ParseResult, parse_code
from omost_schema.conditions import ProcessedCanvas, RegionCondition, clean_subprompt
from omost_schema.errors import CanvasCodeError, ErrorDetail, ErrorResponse
from omost_schema.geometry import GRID_SIZE, Rect, pixel_rect, region_rect
from omost_schema.grammar import canvas_grammar
from omost_schema.json_grammar import canvas_json_grammar
from omost_schema.json_schema import canvas_json_schema
from omost_schema.limits import COMPACT_BUDGET, FULL_BUDGET, CanvasBudget
from omost_schema.names import correct_name
from omost_schema.sketch import debug_png, sketch_image
from omost_schema.vocab import (
    AREAS,
    COLOR_NAMES,
    COLORS,
    LOCATIONS,
    OFFSETS,
    Area,
    ColorName,
    Location,
    Offset,
)

__all__ = [
    "AREAS",
    "COLORS",
    "COLOR_NAMES",
    "COMPACT_BUDGET",
    "FULL_BUDGET",
    "GRID_SIZE",
    "LOCATIONS",
    "OFFSETS",
    "Area",
    "Canvas",
    "CanvasBudget",
    "CanvasCodeError",
    "ColorName",
    "Correction",
    "ErrorDetail",
    "ErrorResponse",
    "GlobalDescription",
    "LocalDescription",
    "Location",
    "Offset",
    "ParseResult",
    "ProcessedCanvas",
    "Rect",
    "RegionCondition",
    "canvas_grammar",
    "canvas_json_grammar",
    "canvas_json_schema",
    "clean_subprompt",
    "correct_name",
    "debug_png",
    "greedy_bags",
    "greedy_partition",
    "parse_code",
    "pixel_rect",
    "region_rect",
    "sketch_image",
]
