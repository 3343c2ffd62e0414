"""Routes that give the web page the schema's rules: the vocabulary, the boxes, and validation.

The page draws the colour sketch itself while a program streams, so it needs the names, the box of
every (location, offset, area) and the colours. They are generated here from ``omost_schema`` rather
than copied into JavaScript, so the page cannot drift from the schema. Hand edits are checked by
the same pydantic model the services use, and every error names the field it is about.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from omost_schema import (
    AREAS,
    COLOR_NAMES,
    COLORS,
    GRID_SIZE,
    LOCATIONS,
    OFFSETS,
    Canvas,
    CanvasCodeError,
    parse_code,
    region_rect,
)
from omost_schema import limits as schema_limits

# The blend weight is part of the sketch's exact definition; the page must paint with the same one.
from omost_schema.conditions import SKETCH_COLOR_WEIGHT
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from omost_renderer.api import route_docs
from omost_renderer.pipelines.rendering import RenderParams

_NAME_FIELDS: dict[str, tuple[str, ...]] = {
    "location": LOCATIONS,
    "offset": OFFSETS,
    "area": AREAS,
    "HTML_web_color_name": COLOR_NAMES,
}

_FIELD_WORDS = {"HTML_web_color_name": "colour name"}


# Fixed-length arrays rather than tuples: a tuple's JSON schema (`prefixItems`) is read as an
# invalid `items` list by OpenAPI tools that predate 3.1, and clients get the same arrays.
RGB = Annotated[list[int], Field(min_length=3, max_length=3)]
Box = Annotated[list[int], Field(min_length=4, max_length=4)]


class VocabularyResponse(BaseModel):
    """Everything the page needs to draw and edit a canvas exactly as the schema defines it."""

    grid_size: int
    locations: list[str]
    offsets: list[str]
    areas: list[str]
    colors: dict[str, RGB]
    #: ``boxes[location][offset][area] = [top, bottom, left, right]`` on the grid, end-exclusive.
    boxes: dict[str, dict[str, dict[str, Box]]]
    sketch_color_weight: float
    limits: dict[str, float]
    #: JSON schema of the render parameters (bounds and defaults for the render form).
    render_params: dict[str, Any]


class ValidateRequest(BaseModel):
    """A canvas to check, as JSON (from the region editor) or as Omost code (from the code view)."""

    model_config = ConfigDict(extra="forbid")

    canvas: dict[str, Any] | None = None
    code: Annotated[str, Field(max_length=schema_limits.MAX_CODE_CHARS)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ValidateRequest:
        if (self.canvas is None) == (self.code is None):
            raise ValueError("give exactly one of 'canvas' or 'code'")
        return self


class FieldError(BaseModel):
    """One problem, with the path of the field it is about (``local_descriptions.0.area``)."""

    path: str
    message: str
    type: str
    #: The closest valid name, for a misspelt location, offset, area or colour.
    suggestion: str | None = None
    line: int | None = None
    column: int | None = None


class CorrectionOut(BaseModel):
    """A repair lenient parsing made to the code."""

    kind: str
    original: str
    corrected: str
    line: int | None = None


class ValidateResponse(BaseModel):
    """The checked canvas (when valid), its code, and every error and correction."""

    valid: bool
    canvas: Canvas | None = None
    code: str | None = None
    errors: list[FieldError] = Field(default_factory=list)
    corrections: list[CorrectionOut] = Field(default_factory=list)
    kind: Literal["canvas", "code"]


def build_vocabulary() -> VocabularyResponse:
    """Return the vocabulary, every box and the limits, computed from ``omost_schema``."""
    boxes = {
        location: {
            offset: {area: list(region_rect(location, offset, area)) for area in AREAS}
            for offset in OFFSETS
        }
        for location in LOCATIONS
    }
    limits = {
        name.lower(): float(value)
        for name, value in vars(schema_limits).items()
        if name.startswith("MAX_") and isinstance(value, int | float)
    }
    return VocabularyResponse(
        grid_size=GRID_SIZE,
        locations=list(LOCATIONS),
        offsets=list(OFFSETS),
        areas=list(AREAS),
        colors={name: list(rgb) for name, rgb in COLORS.items()},
        boxes=boxes,
        sketch_color_weight=SKETCH_COLOR_WEIGHT,
        limits=limits,
        render_params=RenderParams.model_json_schema(),
    )


def _suggestion(field: str, value: object) -> str | None:
    names = _NAME_FIELDS.get(field)
    if names is None or not isinstance(value, str):
        return None
    match = difflib.get_close_matches(value.lower(), names, n=1, cutoff=0.5)
    return match[0] if match else None


def _field_errors(error: ValidationError) -> list[FieldError]:
    errors: list[FieldError] = []
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"]]
        field = location[-1] if location else ""
        message = item["msg"]
        if item["type"] == "literal_error" and field in _NAME_FIELDS:
            # Pydantic lists all 149 colours; the name and the closest valid one say more.
            message = f"{item.get('input')!r} is not a valid {_FIELD_WORDS.get(field, field)}"
        errors.append(
            FieldError(
                path=".".join(location),
                message=message,
                type=item["type"],
                suggestion=_suggestion(field, item.get("input")),
            )
        )
    return errors


def validate_canvas(request: ValidateRequest) -> ValidateResponse:
    """Check a canvas given as JSON or code with the schema's rules.

    Args:
        request: Exactly one of ``canvas`` (JSON) or ``code`` (Omost code).

    Returns:
        ``valid`` with the canvas and its printed code, or the errors with their field paths
        (and line and column for code). Lenient parsing's corrections are listed either way.
    """
    if request.code is not None:
        try:
            result = parse_code(request.code, strict=False)
        except CanvasCodeError as exc:
            error = FieldError(
                path="code", message=exc.message, type="code", line=exc.line, column=exc.column
            )
            return ValidateResponse(valid=False, errors=[error], kind="code")
        except ValidationError as exc:
            return ValidateResponse(valid=False, errors=_field_errors(exc), kind="code")
        corrections = [
            CorrectionOut(kind=c.kind, original=c.original, corrected=c.corrected, line=c.line)
            for c in result.corrections
        ]
        return ValidateResponse(
            valid=True,
            canvas=result.canvas,
            code=result.canvas.to_code(),
            corrections=corrections,
            kind="code",
        )
    try:
        canvas = Canvas.model_validate(request.canvas)
    except ValidationError as exc:
        return ValidateResponse(valid=False, errors=_field_errors(exc), kind="canvas")
    return ValidateResponse(valid=True, canvas=canvas, code=canvas.to_code(), kind="canvas")


def vocabulary_router() -> APIRouter:
    """Return the routes ``GET /v1/schema/vocabulary`` and ``POST /v1/canvases/validate``."""
    router = APIRouter(tags=["schema"])
    vocabulary = build_vocabulary()

    @router.get("/v1/schema/vocabulary", responses=route_docs.VOCABULARY)
    async def get_vocabulary() -> VocabularyResponse:
        """The names, boxes, colours and limits of a canvas, from ``omost_schema``."""
        return vocabulary

    @router.post("/v1/canvases/validate", responses=route_docs.VALIDATE)
    async def post_validate(request: ValidateRequest) -> ValidateResponse:
        """Check a hand-edited canvas (JSON or code); answers 200 with errors when invalid."""
        return validate_canvas(request)

    return router
