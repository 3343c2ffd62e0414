"""Errors of the schema package and the OpenAI-style error envelope both services answer with."""

from __future__ import annotations

from pydantic import BaseModel


class CanvasCodeError(ValueError):
    """Omost code that is not a canvas program, with where and why.

    Attributes:
        message: What is wrong, in words a person understands.
        line: 1-based line in the text given to the parser (``None`` when not tied to a place).
        column: 1-based column on that line (``None`` when not tied to a place).
    """

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.message = message
        self.line = line
        self.column = column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"{where}{message}")


class ErrorDetail(BaseModel):
    """The inside of OpenAI's error envelope."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail

    @classmethod
    def build(
        cls, message: str, type_: str, *, param: str | None = None, code: str | None = None
    ) -> ErrorResponse:
        """Build an envelope from its parts."""
        return cls(error=ErrorDetail(message=message, type=type_, param=param, code=code))
