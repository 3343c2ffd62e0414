"""Number fields that take JSON numbers only.

Pydantic's lax mode turns ``true`` into ``1`` and ``"7"`` into ``7`` for an ``int`` field, so a
request the JSON schema calls invalid would be served. ``NUMBER_ONLY`` refuses booleans and
strings and keeps the rest of lax mode (``1792.0`` is an integer to JSON Schema, and is accepted).
Put it after the field's constraints, so that they stay in the JSON schema:
``Annotated[int, Field(ge=1), NUMBER_ONLY]``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator


def _number_only(value: object) -> object:
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    return value


#: Refuses booleans and strings where a number is expected.
NUMBER_ONLY = BeforeValidator(_number_only)
#: An ``int`` field that refuses booleans and strings.
JsonInt = Annotated[int, NUMBER_ONLY]
#: A ``float`` field that refuses booleans and strings.
JsonFloat = Annotated[float, NUMBER_ONLY]
