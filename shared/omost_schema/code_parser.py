"""Safe parser of Omost code: a whitelist over Python's syntax tree, never ``exec``/``eval``."""

from __future__ import annotations

from dataclasses import dataclass, field

from omost_schema.canvas import Canvas


@dataclass(frozen=True)
class Correction:
    """One change lenient parsing made to what the model wrote.

    Attributes:
        kind: What was corrected: ``location``, ``offset``, ``area``, ``color``, ``quote``, ``truncation``...
        original: The text as written.
        corrected: The text used instead.
        line: 1-based line of the original text, when known.
    """

    kind: str
    original: str
    corrected: str
    line: int | None = None


@dataclass(frozen=True)
class ParseResult:
    """A parsed canvas with every correction and warning of lenient parsing."""

    canvas: Canvas
    corrections: list[Correction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_code(text: str, *, strict: bool = False) -> ParseResult:
    """Parse Omost code into a canvas (not yet implemented)."""
    raise NotImplementedError
