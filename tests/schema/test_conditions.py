from __future__ import annotations

import numpy as np
import pytest
from omost_schema import Canvas, clean_subprompt
from omost_schema.conditions import sorted_locals


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A mighty dinosaur.", "A mighty dinosaur."),
        ("A mighty dinosaur", "A mighty dinosaur."),
        (" ,. hello, world.. ,", "hello, world."),
        ("", "."),
        (" ... ", "."),
        ("keep: inner, dots. here", "keep: inner, dots. here."),
    ],
)
def test_clean_subprompt_strips_ends_and_adds_one_period(text: str, expected: str) -> None:
    assert clean_subprompt(text) == expected


def test_process_orders_regions_farthest_first_ties_in_program_order(dragon: Canvas) -> None:
    # Distances 5, 7, 10, 5: the sky (10) first, then the dinosaur (7), then the two 5s in order.
    conditions = dragon.process().conditions
    assert [c.local_index for c in conditions] == [None, 2, 1, 0, 3]


def test_sorted_locals_is_stable_for_equal_distances(dragon: Canvas) -> None:
    same = dragon.model_copy(
        update={
            "local_descriptions": [
                local.model_copy(update={"distance_to_viewer": 1.0})
                for local in dragon.local_descriptions
            ]
        }
    )
    assert [index for index, _ in sorted_locals(same)] == [0, 1, 2, 3]


def test_process_global_region_prefixes_suffixes_and_mask(dragon: Canvas) -> None:
    region = dragon.process().conditions[0]
    glob = dragon.global_description
    assert region.prefixes == ["A fierce battle between warriors and a dinosaur."]
    assert region.suffixes == [*glob.detailed_descriptions, glob.tags + "."]
    assert region.mask.dtype == np.float32
    assert region.mask.shape == (90, 90)
    assert region.mask.min() == region.mask.max() == 1.0
    assert region.rect == (0, 90, 0, 90)
    assert region.color == (47, 79, 79)


def test_process_local_region_prefixes_suffixes_and_mask(dragon: Canvas) -> None:
    region = dragon.process().conditions[3]  # the warriors, on the left
    local = dragon.local_descriptions[0]
    assert region.local_index == 0
    assert region.prefixes == [
        "A fierce battle between warriors and a dinosaur.",
        "A group of fierce warriors.",
    ]
    assert region.suffixes == [
        *local.detailed_descriptions,
        local.tags + ".",
        "Determined and focused, ready for the fierce battle.",
        "Highly detailed and dynamic, capturing the intensity of the warriors.",
        "High resolution with intricate details and dynamic poses.",
    ]
    assert region.rect == (15, 75, 0, 60)
    assert region.mask.dtype == np.float32
    assert region.mask.sum() == 60 * 60
    assert region.mask[15:75, 0:60].min() == 1.0
    assert region.mask[14, 0] == region.mask[75, 0] == region.mask[15, 60] == 0.0
    assert region.color == (184, 134, 11)


def test_process_sketch_blends_colours_and_truncates(dragon: Canvas) -> None:
    # Hand-computed: global darkslategray (47,79,79), then farthest first each box becomes
    # 0.7 * colour + 0.3 * beneath: sky midnightblue (25,25,112) over rows 0..45,
    # dinosaur firebrick (178,34,34) over 10..80 x 10..80, warriors darkgoldenrod
    # (184,134,11) over 15..75 x 0..60, battlefield darkolivegreen (85,107,47) over rows 45..90.
    sketch = dragon.process().initial_image
    assert sketch.dtype == np.uint8
    assert sketch.shape == (90, 90, 3)
    # Sky only: 0.7*25 + 0.3*47 = 31.6 -> 31 (truncated, not rounded), 41.2 -> 41, 102.1 -> 102.
    assert sketch[5, 5].tolist() == [31, 41, 102]
    # Sky, dinosaur, warriors: 169.024, 104.648, 24.029.
    assert sketch[20, 20].tolist() == [169, 104, 24]
    # Battlefield only: 73.6, 98.6, 56.6.
    assert sketch[85, 85].tolist() == [73, 98, 56]
    # The boxes are end-exclusive but reach the grid's edge: the last cell is painted too.
    assert sketch[89, 89].tolist() == [73, 98, 56]


def test_process_sketch_of_global_only_is_flat(dragon: Canvas) -> None:
    alone = dragon.model_copy(update={"local_descriptions": []})
    processed = alone.process()
    assert len(processed.conditions) == 1
    assert (processed.initial_image == np.array([47, 79, 79], dtype=np.uint8)).all()
