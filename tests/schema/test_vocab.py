from __future__ import annotations

from omost_schema import AREAS, COLOR_NAMES, COLORS, LOCATIONS, OFFSETS


def test_vocabulary_has_nine_of_each_box_word() -> None:
    assert len(set(LOCATIONS)) == len(set(OFFSETS)) == len(set(AREAS)) == 9
    assert LOCATIONS[0] == "in the center"
    assert OFFSETS[0] == "no offset"
    assert AREAS[-1] == "a large horizontal area"


def test_colors_are_the_149_names_of_the_seed() -> None:
    assert len(COLORS) == 149
    assert tuple(COLORS) == COLOR_NAMES
    assert all(name == name.lower() for name in COLOR_NAMES)
    assert all(len(rgb) == 3 and all(0 <= c <= 255 for c in rgb) for rgb in COLORS.values())


def test_colors_keep_omost_specials() -> None:
    assert COLORS["navyblue"] == COLORS["navy"] == (0, 0, 128)
    assert COLORS["gray"] == COLORS["grey"] == (128, 128, 128)
    assert COLORS["darkslategray"] == COLORS["darkslategrey"] == (47, 79, 79)
    assert COLORS["rebeccapurple"] == (102, 51, 153)
    assert COLORS["aqua"] == COLORS["cyan"] == (0, 255, 255)
