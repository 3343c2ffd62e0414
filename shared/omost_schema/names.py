"""Omost's lenient matching of near-miss vocabulary names."""

import difflib
from typing import Literal

from omost_schema.limits import MAX_NAME_CHARS
from omost_schema.vocab import AREAS, COLOR_NAMES, LOCATIONS, OFFSETS

NameKind = Literal["location", "offset", "area", "color"]

_NAMES: dict[str, tuple[str, ...]] = {
    "location": LOCATIONS,
    "offset": OFFSETS,
    "area": AREAS,
    "color": COLOR_NAMES,
}

# Omost's cut-off for difflib's similarity ratio: below it a name is refused.
_CUTOFF = 0.5


def vocabulary(kind: NameKind) -> tuple[str, ...]:
    """Return the valid names of one kind, in Omost's order."""
    try:
        return _NAMES[kind]
    except KeyError:
        raise ValueError(f"unknown name kind {kind!r}; expected one of {sorted(_NAMES)}") from None


def correct_name(kind: NameKind, value: str) -> str:
    """Map a possibly misspelt name to the closest valid one, as Omost does.

    The value is lower-cased, then matched with ``difflib.get_close_matches`` (cut-off 0.5).
    Values over ``MAX_NAME_CHARS`` (90) characters are refused without matching: none of them
    could reach the cut-off, so Omost would refuse them too. Omost's matching is known to be
    wrong at times ("top left" becomes "on the left"), so callers should report every
    correction, and strict parsing refuses them.

    Args:
        kind: ``"location"``, ``"offset"``, ``"area"`` or ``"color"``.
        value: The name as written.

    Returns:
        A valid name of that kind (``value`` itself when it is already valid).

    Raises:
        ValueError: If no valid name is close enough, or ``kind`` is unknown.
    """
    names = vocabulary(kind)
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(
            f"{kind} is {len(value)} characters long; over {MAX_NAME_CHARS} no valid name is close"
        )
    lowered = value.lower()
    match = difflib.get_close_matches(lowered, names, n=1, cutoff=_CUTOFF)
    if not match:
        raise ValueError(f"{value!r} is not a valid {kind} and no valid {kind} is close to it")
    return match[0]
