"""Safe parser of Omost code: a whitelist over Python's syntax tree, never ``exec``/``eval``.

The steps, each bounded in time and memory: cap the text's size, find the fenced code, cap its
bracket nesting, parse it with ``ast`` (repairing, when lenient, inner quotes and a cut-off last
call), accept only the canvas calls with literal arguments, correct near-miss names when lenient,
and validate with the pydantic models. Every refusal is a ``CanvasCodeError`` with its place in
the text the caller gave.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from omost_schema.canvas import Canvas, GlobalDescription, LocalDescription
from omost_schema.code_calls import GLOBAL_METHOD, CallSite, Place, program_calls
from omost_schema.code_repair import drop_cut_off_call, repair_quotes
from omost_schema.code_source import extract_code, scan_brackets
from omost_schema.errors import CanvasCodeError
from omost_schema.limits import MAX_CODE_CHARS, MAX_CODE_NESTING, MAX_LOCAL_DESCRIPTIONS
from omost_schema.names import NameKind, correct_name, vocabulary

# Each repair re-parses the code; real answers need one or two, so this bounds the work.
_MAX_REPAIRS = 16
# Arguments holding vocabulary names, and their kind for ``correct_name``.
_NAME_ARGUMENTS: dict[str, NameKind] = {
    "location": "location",
    "offset": "offset",
    "area": "area",
    "HTML_web_color_name": "color",
}
# Values quoted in error messages are cut to this many characters.
_SHOWN_CHARS = 60


@dataclass(frozen=True)
class Correction:
    """One change lenient parsing made to what the model wrote.

    Attributes:
        kind: What was corrected: ``location``, ``offset``, ``area``, ``color``, ``quote`` or
            ``truncation``.
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


@dataclass
class _Fixes:
    """Corrections and warnings gathered while parsing.

    Lines are given in the parsed code and stored in the caller's text (``line_offset`` later).
    """

    line_offset: int = 0
    corrections: list[Correction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, kind: str, original: str, corrected: str, line: int, warning: str) -> None:
        line += self.line_offset
        self.corrections.append(Correction(kind, original, corrected, line))
        self.warnings.append(f"line {line}: {warning}")

    def warn(self, line: int, warning: str) -> None:
        self.warnings.append(f"line {line + self.line_offset}: {warning}")


def _shorten(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= _SHOWN_CHARS else shown[: _SHOWN_CHARS - 3] + "..."


def _syntax_error(error: SyntaxError) -> CanvasCodeError:
    return CanvasCodeError(f"not valid Python: {error.msg}", error.lineno, error.offset)


def _parse_python(code: str, *, strict: bool, fixes: _Fixes) -> tuple[ast.Module, str]:
    """Parse with ``ast`` only, repairing inner quotes and a cut-off last call when lenient."""
    repaired_lines: set[int] = set()
    for _ in range(_MAX_REPAIRS):
        try:
            return ast.parse(code, mode="exec"), code
        except SyntaxError as error:
            failure = error
        except ValueError as error:
            raise CanvasCodeError(f"not valid Python: {error}") from None
        except (RecursionError, MemoryError):
            raise CanvasCodeError("the code is too deeply nested to parse") from None
        line = failure.lineno or 0
        if strict or line == 0:
            raise _syntax_error(failure) from None
        quote = repair_quotes(code, line) if line not in repaired_lines else None
        if quote is not None:
            repaired_lines.add(line)
            code = quote.code
            fixes.add(
                "quote",
                quote.original,
                quote.repaired,
                line,
                f"escaped the quotes inside the string {quote.original}",
            )
            continue
        cut = drop_cut_off_call(code, line)
        if cut is None:
            raise _syntax_error(failure) from None
        code = cut.code
        first_line = cut.dropped.split("\n", 1)[0]
        fixes.add(
            "truncation",
            cut.dropped,
            "",
            cut.line,
            f"the code is cut off; dropped the incomplete call {first_line!r}",
        )
    raise CanvasCodeError(f"the code needs more than {_MAX_REPAIRS} repairs; refusing it")


def _drop_cut_off_name(tree: ast.Module, fixes: _Fixes) -> None:
    """Drop a last statement that is only the start of a call (``canvas.add_loc``)."""
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return
    node = tree.body[-1].value
    if isinstance(node, ast.Name):
        written = node.id
        cut_off = "canvas".startswith(written)
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        written = f"{node.value.id}.{node.attr}"
        cut_off = node.value.id == "canvas" and any(
            method.startswith(node.attr) for method in (GLOBAL_METHOD, "add_local_description")
        )
    else:
        return
    if cut_off:
        tree.body.pop()
        fixes.add(
            "truncation",
            written,
            "",
            node.lineno,
            f"the code is cut off; dropped the incomplete call {written!r}",
        )


def _correct_names(call: CallSite, values: dict[str, Any], fixes: _Fixes) -> None:
    for name, kind in _NAME_ARGUMENTS.items():
        value = values.get(name)
        if not isinstance(value, str) or value in vocabulary(kind):
            continue
        place = call.arguments[name].place
        try:
            corrected = correct_name(kind, value)
        except ValueError as error:
            raise CanvasCodeError(f"{name}: {error}", place.line, place.column) from None
        values[name] = corrected
        fixes.add(
            kind,
            value,
            corrected,
            place.line,
            f"{name} {value!r} is not a valid {kind}; using {corrected!r}",
        )


def _validation_error(error: ValidationError, call: CallSite) -> CanvasCodeError:
    detail = error.errors()[0]
    location = detail["loc"]
    name = str(location[0]) if location else ""
    place: Place = call.place
    if name in call.arguments:
        argument = call.arguments[name]
        place = argument.place
        item = location[1] if len(location) > 1 else None
        if isinstance(item, int) and 0 <= item < len(argument.item_places):
            place = argument.item_places[item]
    shown = f"{name}={_shorten(detail['input'])}" if name else call.method
    return CanvasCodeError(f"{call.method}: {shown}: {detail['msg']}", place.line, place.column)


def _build_canvas(calls: list[CallSite], *, strict: bool, fixes: _Fixes) -> Canvas:
    global_calls = [call for call in calls if call.method == GLOBAL_METHOD]
    if not global_calls:
        cut = any(correction.kind == "truncation" for correction in fixes.corrections)
        raise CanvasCodeError(
            "missing canvas.set_global_description(...): a canvas needs a global description"
            + (" (the code was cut off before it was complete)" if cut else "")
        )
    if len(global_calls) > 1:
        second = global_calls[1].place
        raise CanvasCodeError(
            "canvas.set_global_description(...) may be called only once", second.line, second.column
        )
    global_description: GlobalDescription | None = None
    local_descriptions: list[LocalDescription] = []
    for call in calls:
        values = {name: argument.value for name, argument in call.arguments.items()}
        if call.positional:
            fixes.warn(call.place.line, f"positional arguments read in {call.method}'s order")
        if not strict:
            _correct_names(call, values, fixes)
        try:
            if call.method == GLOBAL_METHOD:
                global_description = GlobalDescription.model_validate(values)
            else:
                local_descriptions.append(LocalDescription.model_validate(values))
        except ValidationError as error:
            raise _validation_error(error, call) from None
    assert global_description is not None  # exactly one global call was checked above
    return Canvas(global_description=global_description, local_descriptions=local_descriptions)


def _parse_source(code: str, *, strict: bool, fixes: _Fixes) -> Canvas:
    scan = scan_brackets(code)
    if scan.max_depth > MAX_CODE_NESTING:
        raise CanvasCodeError(
            f"brackets nested {scan.max_depth} deep; a canvas needs at most {MAX_CODE_NESTING}",
            scan.deepest_line,
        )
    tree, code = _parse_python(code, strict=strict, fixes=fixes)
    if not strict:
        _drop_cut_off_name(tree, fixes)
    calls = program_calls(tree, code, strict=strict, max_calls=MAX_LOCAL_DESCRIPTIONS + 1)
    return _build_canvas(calls, strict=strict, fixes=fixes)


def _shift(line: int | None, offset: int) -> int | None:
    return None if line is None else line + offset


def parse_code(text: str, *, strict: bool = False) -> ParseResult:
    """Parse Omost code, or a whole model answer holding it, into a canvas without running it.

    Args:
        text: Bare code, or prose with a fenced python block (the first one is parsed).
        strict: Accept only exact vocabulary names and a complete program, with no repairs (what
            constrained decoding produces). Otherwise near-miss names are corrected, inner quotes
            escaped and a cut-off last call dropped, each reported.

    Returns:
        The canvas with the corrections and warnings, their lines in ``text``.

    Raises:
        CanvasCodeError: If ``text`` is not a canvas program; ``line`` and ``column`` refer to
            ``text`` (lines end at LF, CRLF or CR, as in Python).
    """
    if len(text) > MAX_CODE_CHARS:
        raise CanvasCodeError(f"the code is {len(text)} characters; at most {MAX_CODE_CHARS}")
    # Python ends lines at \r\n, \r and \n; one convention keeps every line number the same.
    source = extract_code(text.replace("\r\n", "\n").replace("\r", "\n"))
    fixes = _Fixes(line_offset=source.line_offset)
    if source.fenced and not source.closed:
        if strict:
            raise CanvasCodeError("the code block has no closing ```", source.fence_line)
        fixes.warnings.append("the code block has no closing ```; the answer may be cut off")
    try:
        canvas = _parse_source(source.code, strict=strict, fixes=fixes)
    except CanvasCodeError as error:
        raise CanvasCodeError(
            error.message, _shift(error.line, source.line_offset), error.column
        ) from None
    return ParseResult(canvas=canvas, corrections=fixes.corrections, warnings=fixes.warnings)
