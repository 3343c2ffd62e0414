from __future__ import annotations

import pytest
from omost_schema import AREAS, COLOR_NAMES, LOCATIONS, OFFSETS, correct_name
from omost_schema.names import vocabulary


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


def test_vocabulary_unknown_kind_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unknown name kind"):
        vocabulary("shape")  # type: ignore[arg-type]
