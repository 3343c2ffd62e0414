"""Pieces both decoding grammars (Omost code and canvas JSON) are built from."""

from omost_schema.limits import MAX_DISTANCE_TO_VIEWER

# Each description's fields in Omost's order (the model's and the code's), with the rule of their
# value; each grammar defines the rules.
GLOBAL_FIELDS = (
    ("description", "text"),
    ("detailed_descriptions", "texts"),
    ("tags", "tags"),
    ("HTML_web_color_name", "color"),
)
LOCAL_FIELDS = (
    ("location", "location"),
    ("offset", "offset"),
    ("area", "area"),
    ("distance_to_viewer", "distance"),
    ("description", "text"),
    ("detailed_descriptions", "texts"),
    ("tags", "tags"),
    ("atmosphere", "text"),
    ("style", "text"),
    ("quality_meta", "text"),
    ("HTML_web_color_name", "color"),
)


def text_char(excluded: str = "") -> str:
    """A character class of printable text, without ``excluded`` (quote, backslash) either.

    Control characters (C0, DEL, C1) and the Unicode line and paragraph separators are always
    left out: ``Canvas`` refuses the first and line-based tools split on the others.
    """
    return f"[^{excluded}\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]"


def distance_rules(*, integers: bool) -> str:
    """Rules ``distance`` and ``fraction``: a decimal above 0 and at most the canvas limit.

    Up to four decimal places; the limit (a power of ten) is spelled out, numbers with fewer
    digits stay below it. ``integers`` also admits whole numbers without a point (JSON).
    """
    integer_max = int(MAX_DISTANCE_TO_VIEWER)
    more_digits = len(str(integer_max)) - 2
    point = '("." [0-9]{1,4})?' if integers else '"." [0-9]{1,4}'
    return (
        f'distance ::= "0." fraction | [1-9] [0-9]{{0,{more_digits}}} {point}'
        f' | "{integer_max}." "0"{{1,4}}' + (f' | "{integer_max}"' if integers else "") + "\n"
        'fraction ::= [1-9] [0-9]{0,3} | "0" [1-9] [0-9]{0,2} | "00" [1-9] [0-9]{0,1}'
        ' | "000" [1-9]\n'
    )
