"""Hypothesis strategies for valid canvases, shared by the schema tests."""

from __future__ import annotations

from hypothesis import strategies as st
from omost_schema import AREAS, COLOR_NAMES, LOCATIONS, OFFSETS, Canvas
from omost_schema.canvas import GlobalDescription, LocalDescription
from omost_schema.limits import MAX_DISTANCE_TO_VIEWER

# Characters that stress quoting and parsing, mixed into otherwise arbitrary printable text.
_TRICKY = st.sampled_from(["'", '"', "\\", "#", "(", ")", "[", "]", ",", ".", " ", "`", "é", "🐉"])
# Any character a canvas string may hold: no C0 controls, no DEL, no lone surrogates.
_ANY = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters=[chr(code) for code in range(0x20)] + ["\x7f"],
)


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Strings valid in any text field, rich in quotes, backslashes and unicode."""
    return st.text(st.one_of(_TRICKY, _ANY), max_size=max_size)


def distances() -> st.SearchStrategy[float]:
    """Valid ``distance_to_viewer`` values."""
    return st.floats(
        min_value=0.0,
        max_value=MAX_DISTANCE_TO_VIEWER,
        exclude_min=True,
        allow_nan=False,
        allow_infinity=False,
    )


def global_descriptions() -> st.SearchStrategy[GlobalDescription]:
    """Valid global descriptions."""
    return st.builds(
        GlobalDescription,
        description=texts(),
        detailed_descriptions=st.lists(texts(), max_size=4),
        tags=texts(),
        HTML_web_color_name=st.sampled_from(COLOR_NAMES),
    )


def local_descriptions() -> st.SearchStrategy[LocalDescription]:
    """Valid local descriptions."""
    return st.builds(
        LocalDescription,
        location=st.sampled_from(LOCATIONS),
        offset=st.sampled_from(OFFSETS),
        area=st.sampled_from(AREAS),
        distance_to_viewer=distances(),
        description=texts(),
        detailed_descriptions=st.lists(texts(), max_size=4),
        tags=texts(),
        atmosphere=texts(),
        style=texts(),
        quality_meta=texts(),
        HTML_web_color_name=st.sampled_from(COLOR_NAMES),
    )


def canvases(max_locals: int = 4) -> st.SearchStrategy[Canvas]:
    """Random valid canvases (a global description and up to ``max_locals`` locals)."""
    return st.builds(
        Canvas,
        global_description=global_descriptions(),
        local_descriptions=st.lists(local_descriptions(), max_size=max_locals),
    )
