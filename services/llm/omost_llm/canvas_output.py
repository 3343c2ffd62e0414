"""Turn what a model wrote into a validated canvas, strictly or leniently, or say why not."""

from __future__ import annotations

from dataclasses import dataclass, field

from omost_schema import Canvas, CanvasCodeError, Correction, parse_code
from pydantic import ValidationError

from omost_llm.config import OutputMode


class InvalidCanvasError(ValueError):
    """What the model wrote is not a canvas; the message says why, for the retry prompt."""


@dataclass(frozen=True)
class ParsedOutput:
    """A canvas read from model output, with its printed code and any repairs."""

    canvas: Canvas
    code: str
    corrections: list[Correction] = field(default_factory=list)


def _json_text(raw: str) -> str:
    # Unconstrained models wrap JSON in a fence or prose; the object spans first '{' to last '}'.
    start, end = raw.find("{"), raw.rfind("}")
    return raw[start : end + 1] if 0 <= start < end else raw


def read_output(raw: str, output: OutputMode, *, strict: bool) -> ParsedOutput:
    """Read a model's answer as a canvas.

    Args:
        raw: The generated text.
        output: ``code`` (Omost code) or ``json`` (canvas JSON).
        strict: Constrained output must parse exactly; free text is read leniently.

    Returns:
        The canvas, its Omost code (which the strict parser reads back to the same canvas) and
        the corrections lenient parsing made.

    Raises:
        InvalidCanvasError: If the text is not a canvas.
    """
    corrections: list[Correction] = []
    try:
        if output is OutputMode.JSON:
            canvas = Canvas.model_validate_json(raw if strict else _json_text(raw))
        else:
            result = parse_code(raw, strict=strict)
            canvas, corrections = result.canvas, list(result.corrections)
    except (CanvasCodeError, ValidationError, ValueError) as exc:
        raise InvalidCanvasError(str(exc)) from exc
    code = canvas.to_code()
    # The guarantee the service gives: the code it returns passes the strict parser.
    try:
        reread = parse_code(code, strict=True).canvas
    except CanvasCodeError as exc:
        raise InvalidCanvasError(f"printed code does not parse back: {exc}") from exc
    if reread != canvas:
        raise InvalidCanvasError("printed code does not parse back to the same canvas")
    return ParsedOutput(canvas=canvas, code=code, corrections=corrections)


def retry_feedback(error: InvalidCanvasError, output: OutputMode) -> str:
    """The user turn that asks an unconstrained model to try again, with the parse error."""
    form = "one JSON object" if output is OutputMode.JSON else "one complete python code block"
    return (
        f"That answer is not a valid canvas: {error}. Answer again with {form} holding the "
        "complete canvas, using only the allowed values."
    )
