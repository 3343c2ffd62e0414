"""Finding Omost code in a model answer, and cheap checks on its text before Python parses it.

Python's parser can exhaust the C stack or memory on deeply nested brackets, so the bracket depth
is measured here with a linear regular-expression scan that skips strings and comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A fence line sits at column 0 (printed code never has ``` at the start of a line: its strings
# sit after indentation or ``name=``); an opening one may name a language.
_FENCE = re.compile(r"^```[ \t]*(?P<language>[\w+-]*)[ \t]*\r?$", re.MULTILINE)
_PYTHON_LANGUAGES = frozenset({"", "python", "python3", "py"})

# One token the scan cares about: a string literal (possibly unterminated: a one-line string ends
# at the line's end, a triple-quoted one at the end of the text), a comment, or a bracket. Each
# alternative consumes characters in one pass (each loop unrolled: a run of plain characters,
# then one escape), so the scan is linear in the text.
_SCAN_TOKEN = re.compile(
    r"""
    (?P<string>
        (?: '''[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*(?P<end3s>''')?
          | \"\"\"[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*(?P<end3d>\"\"\")?
          | '[^'\\\n]*(?:\\.[^'\\\n]*)*(?P<end1s>')?
          | "[^"\\\n]*(?:\\.[^"\\\n]*)*(?P<end1d>")?
        )
    )
    | (?P<comment>\#[^\n]*)
    | (?P<open>[(\[{])
    | (?P<close>[)\]}])
    """,
    re.VERBOSE | re.DOTALL,
)

# A top-level statement of a canvas program starts with a name at column 0 (``canvas...``).
_STATEMENT_START = re.compile(r"^[A-Za-z_]", re.MULTILINE)


@dataclass(frozen=True)
class CodeSource:
    """The code to parse and where it sits in the text the caller gave.

    Attributes:
        code: The program text (the fenced block's contents, or the whole text).
        line_offset: Lines of the caller's text before the code's first line.
        fenced: Whether the code came from a fenced block.
        closed: Whether that block had its closing fence (a cut-off answer has none).
        fence_line: 1-based line of the opening fence (0 when the code is not fenced). It is
            ``line_offset`` unless the text ends on the fence's own line.
    """

    code: str
    line_offset: int
    fenced: bool
    closed: bool
    fence_line: int = 0


@dataclass(frozen=True)
class ScanResult:
    """What a bracket scan found.

    Attributes:
        max_depth: Deepest bracket nesting outside strings and comments.
        deepest_line: 1-based line where ``max_depth`` was first reached.
        open_at_end: The text ends inside brackets or inside a string (it was cut off).
    """

    max_depth: int
    deepest_line: int
    open_at_end: bool


def extract_code(text: str) -> CodeSource:
    """Return the first Python (or unnamed) fenced block of ``text``, or the whole text.

    Args:
        text: A model answer: prose with a fenced block, or bare code.

    Returns:
        The code and its position. A block without a closing fence runs to the end of the text.
    """
    fences = _FENCE.finditer(text)
    for opening in fences:
        # Fences pair up in order; the line after an opening fence is the block's first line.
        closing = next(fences, None)
        if opening["language"].lower() not in _PYTHON_LANGUAGES:
            continue
        start = min(opening.end() + 1, len(text))
        line_offset = text.count("\n", 0, start)
        fence_line = text.count("\n", 0, opening.start()) + 1
        if closing is None:
            return CodeSource(text[start:], line_offset, True, False, fence_line)
        return CodeSource(text[start : closing.start()], line_offset, True, True, fence_line)
    return CodeSource(code=text, line_offset=0, fenced=False, closed=True)


def scan_brackets(code: str) -> ScanResult:
    """Measure bracket nesting outside strings and comments, in linear time.

    Args:
        code: Program text.

    Returns:
        The deepest nesting, where it is, and whether the text ends inside brackets or a string.
    """
    depth = max_depth = 0
    deepest_position = 0
    last = None
    # Strings and comments are matched only to be skipped; the loop does no work for them.
    for last in _SCAN_TOKEN.finditer(code):
        kind = last.lastgroup
        if kind == "open":
            depth += 1
            if depth > max_depth:
                max_depth, deepest_position = depth, last.start()
        elif kind == "close":
            depth = max(0, depth - 1)
    in_string = (
        last is not None
        and last["string"] is not None
        and not any(last[name] for name in ("end3s", "end3d", "end1s", "end1d"))
    )
    deepest_line = code.count("\n", 0, deepest_position) + 1
    return ScanResult(max_depth, deepest_line, open_at_end=depth > 0 or in_string)


def last_statement_start(code: str) -> int | None:
    """Return the offset of the last line that starts a top-level statement, if any."""
    last = None
    for match in _STATEMENT_START.finditer(code):
        last = match.start()
    return last
