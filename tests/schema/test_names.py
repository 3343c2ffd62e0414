from __future__ import annotations

import difflib

import pytest
from omost_schema import AREAS, COLOR_NAMES, LOCATIONS, OFFSETS, correct_name
from omost_schema.limits import MAX_NAME_CHARS
from omost_schema.names import vocabulary

# A medium-sized horizontal area, described at length: 67 and 90 characters.
_WORDY_AREA = "a medium-sized horizontal area across the lower part of the picture"
_WORDIER_AREA = (
    "a medium-sized horizontal area stretching across the lower part of the whole picture frame"
)


@pytest.mark.parametrize(
    ("kind", "names"),
    [("location", LOCATIONS), ("offset", OFFSETS), ("area", AREAS), ("color", COLOR_NAMES)],
)
def test_correct_name_keeps_every_valid_name(kind: str, names: tuple[str, ...]) -> None:
    assert [correct_name(kind, name) for name in names] == list(names)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "written", "expected"),
    [
        # Omost's known mis-mapping, reproduced on purpose: difflib prefers "on the left".
        ("location", "top left", "on the left"),
        ("location", "On The Right", "on the right"),
        ("location", "center", "in the center"),
        ("offset", "slightly left", "slightly to the left"),
        ("area", "large square", "a large square area"),
        ("color", "dark golden rod", "darkgoldenrod"),
        ("color", "Red", "red"),
        ("color", "light grey", "lightgrey"),
    ],
)
def test_correct_name_maps_near_misses_like_omost(kind: str, written: str, expected: str) -> None:
    assert correct_name(kind, written) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "written"),
    [("location", "xyz"), ("color", "q"), ("area", ""), ("offset", "zzzzzzzzzzzzzzzzzz")],
)
def test_correct_name_nothing_close_raises_value_error(kind: str, written: str) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        correct_name(kind, written)  # type: ignore[arg-type]


def test_correct_name_refuses_overlong_input() -> None:
    with pytest.raises(ValueError, match="characters long"):
        correct_name("color", "red" * 100)
    with pytest.raises(ValueError, match="characters long"):
        correct_name("area", _WORDIER_AREA + "!")


@pytest.mark.parametrize("written", [_WORDY_AREA, _WORDIER_AREA])
def test_correct_name_maps_long_near_misses_like_omost(written: str) -> None:
    assert len(written) in (67, 90)
    # What Omost's own matching answers, over the whole area vocabulary.
    assert difflib.get_close_matches(written, AREAS, n=1, cutoff=0.5) == [
        "a medium-sized horizontal area"
    ]
    assert correct_name("area", written) == "a medium-sized horizontal area"


def test_name_length_bound_refuses_nothing_omost_could_match() -> None:
    # difflib's ratio is 2 * matches / (len(a) + len(b)) and matches <= the name's length, so a
    # value longer than three times the longest valid name never reaches the 0.5 cut-off.
    longest = max(len(name) for names in (LOCATIONS, OFFSETS, AREAS, COLOR_NAMES) for name in names)
    assert 3 * longest <= MAX_NAME_CHARS
    best_case = "a medium-sized horizontal area" + "x" * (MAX_NAME_CHARS + 1 - longest)
    assert difflib.SequenceMatcher(None, best_case, "a medium-sized horizontal area").ratio() < 0.5


def test_vocabulary_unknown_kind_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unknown name kind"):
        vocabulary("shape")  # type: ignore[arg-type]
