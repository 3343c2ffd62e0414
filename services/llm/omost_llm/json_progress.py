"""Omost code of a canvas whose compact JSON is still being generated, one region at a time.

Constrained ``json`` mode writes ``Canvas.model_dump_json()``'s form (keys in order, no spaces),
so every finished region is a complete JSON object at a known place. Its code can go to the
client at once: ``Canvas.to_code()`` of a canvas with the first ``k`` locals is a prefix of the
code with ``k + 1``, so the pieces add up to the code of the whole canvas.
"""

from __future__ import annotations

import json
from typing import Any

from omost_schema import Canvas
from pydantic import ValidationError

_HEAD = '{"global_description":'
_LOCALS = ',"local_descriptions":['


class JsonCodeStream:
    """Turns growing canvas JSON into growing Omost code, region by region."""

    def __init__(self) -> None:
        """Start with nothing written."""
        self._json = ""
        self._decoder = json.JSONDecoder()
        self._global: dict[str, Any] | None = None
        self._locals: list[dict[str, Any]] = []
        self._position = 0  # where the next region (or the locals list) starts
        self.sent = ""

    def add(self, text: str) -> str:
        """Add generated JSON text; return the Omost code that became final with it."""
        self._json += text
        if not self._advance():
            return ""
        try:
            canvas = Canvas.model_validate(
                {"global_description": self._global, "local_descriptions": self._locals}
            )
        except ValidationError:
            return ""  # the final check reports it; nothing unchecked is sent
        code = canvas.to_code()
        delta, self.sent = code[len(self.sent) :], code
        return delta

    def _advance(self) -> bool:
        # Parse the regions completed since the last call; say whether there is a new one.
        grew = False
        if self._global is None:
            if not self._json.startswith(_HEAD):
                return False
            found = self._decode(len(_HEAD))
            if found is None:
                return False
            self._global, self._position = found
            if not self._json.startswith(_LOCALS, self._position):
                self._global = None  # the locals key is not written yet: try again later
                return False
            self._position += len(_LOCALS)
            grew = True
        while True:
            start = self._position + (1 if self._locals else 0)
            if self._locals and not self._json.startswith(",", self._position):
                return grew
            found = self._decode(start)
            if found is None:
                return grew
            item, self._position = found
            self._locals.append(item)
            grew = True

    def _decode(self, start: int) -> tuple[dict[str, Any], int] | None:
        try:
            value, end = self._decoder.raw_decode(self._json, start)
        except ValueError:
            return None
        return (value, end) if isinstance(value, dict) else None
