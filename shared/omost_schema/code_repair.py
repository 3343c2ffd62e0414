"""Repairs of unambiguous slips in model-written code, for lenient parsing.

Two slips are common in Omost answers: a one-line string holding its own unescaped quote
(``'Surrounding the 'O' are letters.'``), and an answer cut off by the token limit in the middle
of its last call. Each repair keeps the line count, so error places still match the original text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from omost_schema.code_source import last_statement_start, scan_brackets

# A line holding exactly one quoted value: indentation, an optional ``name=``, the opening quote,
# then the value up to the *last* such quote before a tail of only ``,`` ``)`` ``]`` and spaces.
# The greedy ``.*`` makes the value end at the last quote, which is the only reading that leaves
# the line a complete argument.
_QUOTED_VALUE_LINE = re.compile(
    r"""^(?P<head>[ \t]*(?:[A-Za-z_][A-Za-z0-9_]*[ \t]*=[ \t]*)?)
        (?P<quote>['"])(?P<value>.*)(?P=quote)
        (?P<tail>[ \t]*[,)\]]*[ \t]*\r?)$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class QuoteRepair:
    """A line whose inner quotes were escaped.

    Attributes:
        line: 1-based line in the code.
        original: The string literal as written, outer quotes included.
        repaired: The literal with its inner quotes escaped.
        code: The whole code with that line repaired.
    """

    line: int
    original: str
    repaired: str
    code: str


@dataclass(frozen=True)
class Truncation:
    """An incomplete last call dropped from a cut-off answer.

    Attributes:
        line: 1-based line where the dropped call started.
        dropped: The dropped text.
        code: The code without it.
    """

    line: int
    dropped: str
    code: str


def _escape_inner(value: str, quote: str) -> str:
    # Keep the writer's escapes (\n, \\, \') and escape each bare quote, so the value reads back
    # exactly as written between the outer quotes.
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            out.append(value[index : index + 2])
            index += 2
            continue
        out.append("\\" + char if char == quote else char)
        index += 1
    return "".join(out)


def repair_quotes(code: str, line: int) -> QuoteRepair | None:
    """Escape the inner quotes of the one-line string value on ``line``, if that is unambiguous.

    Args:
        code: The code.
        line: 1-based line Python's parser reported an error on.

    Returns:
        The repair, or ``None`` when the line is not a single quoted value with inner quotes.
    """
    lines = code.split("\n")
    if not 0 < line <= len(lines):
        return None
    match = _QUOTED_VALUE_LINE.match(lines[line - 1])
    if match is None:
        return None
    quote, value = match["quote"], match["value"]
    # Triple quotes and values without an inner quote are not this slip.
    if value.startswith(quote * 2) or quote not in value:
        return None
    # Two values on one line (``'a', 'b'`` or ``'a', tags='b'``) cannot be told from one value
    # holding quotes; leave them to the error.
    if re.search(rf"{quote}\s*,\s*(?:[A-Za-z_]\w*\s*=\s*)?{quote}", value):
        return None
    repaired = _escape_inner(value, quote)
    if repaired == value:
        return None
    literal = f"{quote}{repaired}{quote}"
    lines[line - 1] = f"{match['head']}{literal}{match['tail']}"
    return QuoteRepair(line, f"{quote}{value}{quote}", literal, "\n".join(lines))


def drop_cut_off_call(code: str, error_line: int) -> Truncation | None:
    """Drop the last statement when it is an incomplete call the answer was cut off in.

    The statement must be the last one of the code, hold the reported error, and end inside an
    open bracket or string. An error in an earlier, complete call is never dropped.

    Args:
        code: The code.
        error_line: 1-based line Python's parser reported an error on.

    Returns:
        The truncation, or ``None`` when the error is not a cut-off last call.
    """
    start = last_statement_start(code)
    if start is None:
        return None
    start_line = code.count("\n", 0, start) + 1
    if error_line < start_line:
        return None
    dropped = code[start:]
    if not scan_brackets(dropped).open_at_end:
        return None
    return Truncation(line=start_line, dropped=dropped, code=code[:start])
