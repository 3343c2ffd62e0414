"""JSON Schema of a canvas for constrained decoding (not yet implemented)."""

from typing import Any


def canvas_json_schema() -> dict[str, Any]:
    """Return the schema (not yet implemented)."""
    raise NotImplementedError
