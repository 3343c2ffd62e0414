r"""EBNF grammar of Omost code, for constrained decoding of canvas programs.

The grammar is in the GBNF dialect that xgrammar (``xgrammar.Grammar.from_ebnf``) and vLLM's
``structured_outputs={"grammar": ...}`` with the xgrammar backend read (one rule per line, so
``llguidance.gbnf_to_lark`` converts it for llguidance too); the root rule is ``root``.
It describes the program as the Omost models write it (and as ``Canvas.to_code()`` prints it):

- optional comment and blank lines, ``canvas = Canvas()``, one ``canvas.set_global_description(``
  call, then up to the budget's ``max_locals`` ``canvas.add_local_description(`` calls, each
  statement at the start of its line, between bounded runs of comment and blank lines;
- keyword arguments only, all of them, in Omost's order, with an optional trailing comma;
- strings in single or double quotes, bounded by the budget (``Canvas``'s own bounds in the
  full budget), holding no control
  characters, line separators or backslashes: a text with an apostrophe goes in double quotes
  and one with a double quote in single quotes, as ``repr()`` writes them (a text holding both
  quote kinds or a backslash cannot be written, as in the JSON schema, which has no escapes);
- vocabulary values as exact names; ``distance_to_viewer`` as a decimal with up to 6 integer
  digits and 4 decimals, above 0 and at most ``MAX_DISTANCE_TO_VIEWER``;
- whitespace inside calls and comments bounded, so no rule can run on forever.

Everything the grammar matches parses with ``parse_code(text, strict=True)``.
"""

from functools import lru_cache

from omost_schema.grammar_parts import GLOBAL_FIELDS, LOCAL_FIELDS, distance_rules, text_char
from omost_schema.limits import FULL_BUDGET, MAX_TAGS_CHARS, MAX_TEXT_CHARS, CanvasBudget
from omost_schema.vocab import AREAS, COLOR_NAMES, LOCATIONS, OFFSETS

#: Characters after ``#`` in one comment line beyond the budget's text bound (Omost's comments
#: repeat a description, after a few words such as "Add").
COMMENT_EXTRA_CHARS = 100
#: Characters after ``#`` in one comment line under the full budget.
MAX_COMMENT_CHARS = MAX_TEXT_CHARS + COMMENT_EXTRA_CHARS
#: Characters of any string, texts and tags alike, under the full budget: within both of
#: ``Canvas``'s bounds (a smaller budget takes the smaller of its two string bounds).
MAX_GRAMMAR_STRING_CHARS = min(MAX_TEXT_CHARS, MAX_TAGS_CHARS)
#: Comment or blank lines between two statements.
MAX_GAP_LINES = 4
#: Whitespace characters (spaces, tabs, newlines) between two tokens inside a call.
MAX_SPACE_CHARS = 24

# The rules that do not depend on the options. Character classes leave out control characters
# (C0 and DEL, which ``Canvas`` refuses; C1) and the Unicode line and paragraph separators, which
# line-based tools split on; in strings also the backslash and the string's own quote.
#
# Every long run is one bare character class repeated (``[...]{0,N}``): xgrammar matches that
# with a counter, so a token mask costs the same at any point of a string. A repeat of a rule with
# alternatives (an escape beside the plain characters, say) keeps one parser state per possible
# count instead: its masks grew to seconds per token in long descriptions. That is why strings
# hold no escapes. The repeats stand inside the rules that use them: xgrammar 0.2.9 takes 0.04 s
# to compile one there but 5 s when it is a rule of its own. Texts and tags share one bound, so
# there is one repeat per quote style.
_FIXED_RULES = r"""
line ::= "\n" | "#" COMMENT_CHAR{0,MAX_COMMENT} "\n"
gap ::= "\n" line{0,MAX_GAP}
ws ::= [ \t\n]{0,MAX_SPACE}
eq ::= ws "=" ws
comma ::= ws "," ws
tail ::= ws ("," ws)?
text ::= "'" SQ_CHAR{0,MAX_STRING} "'" | "\"" DQ_CHAR{0,MAX_STRING} "\""
texts ::= "[" ws (text (comma text){0,MAX_MORE_DETAILED} tail)? "]"
tags ::= text
program ::= line{0,MAX_GAP} "canvas = Canvas()" gap global_call (gap local_call){0,MAX_LOCALS}
"""


def _call(rule: str, method: str, arguments: tuple[tuple[str, str], ...]) -> str:
    # One line per rule: llama.cpp-style GBNF readers end a rule at the end of its line.
    pairs = " comma ".join(f'"{name}" eq {value}' for name, value in arguments)
    return f'{rule} ::= "canvas.{method}(" ws {pairs} tail ")"\n'


def _names(rule: str, names: tuple[str, ...]) -> str:
    # Either quote style around the exact name, as the models write ``'red'`` or ``"red"``.
    alternatives = " | ".join(f'"{name}"' for name in names)
    quoted = f'"\'" {rule}_name "\'" | "\\"" {rule}_name "\\""'
    return f"{rule}_name ::= {alternatives}\n{rule} ::= {quoted}\n"


@lru_cache(maxsize=16)
def canvas_grammar(*, budget: CanvasBudget = FULL_BUDGET, fenced: bool = False) -> str:
    """Return the EBNF grammar of an Omost canvas program (root rule ``root``).

    Args:
        budget: Most locals, detailed descriptions per region and characters per string (texts
            and tags share one bound in code, the smaller of the budget's two).
        fenced: Wrap the program in a Markdown ```` ```python ```` block, as the Omost models
            answer; otherwise the bare program.

    Returns:
        The grammar text, for ``xgrammar.Grammar.from_ebnf`` or vLLM's structured outputs.
    """
    string_chars = min(budget.max_chars, budget.max_tags_chars)
    if fenced:
        root = 'root ::= "```python\\n" program "\\n" "\\n"{0,2} "```"\n'
    else:
        root = 'root ::= program "\\n"{0,2}\n'
    fixed = (
        _FIXED_RULES.replace("MAX_COMMENT", str(budget.max_chars + COMMENT_EXTRA_CHARS))
        .replace("MAX_GAP", str(MAX_GAP_LINES))
        .replace("MAX_SPACE", str(MAX_SPACE_CHARS))
        .replace("MAX_STRING", str(string_chars))
        .replace("COMMENT_CHAR", text_char())
        .replace("SQ_CHAR", text_char("'\\\\"))
        .replace("DQ_CHAR", text_char('"\\\\'))
        .replace("MAX_MORE_DETAILED", str(budget.max_detailed_descriptions - 1))
        .replace("MAX_LOCALS", str(budget.max_locals))
    )
    calls = _call("global_call", "set_global_description", GLOBAL_FIELDS) + _call(
        "local_call", "add_local_description", LOCAL_FIELDS
    )
    vocabulary = (
        _names("location", LOCATIONS)
        + _names("offset", OFFSETS)
        + _names("area", AREAS)
        + _names("color", COLOR_NAMES)
    )
    return root + fixed.lstrip("\n") + distance_rules(integers=False) + calls + vocabulary
