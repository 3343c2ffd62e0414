"""The shared canvas diff: added, removed, moved or resized, recoloured, rewritten regions."""

from __future__ import annotations

from omost_schema import Canvas, GlobalDescription, LocalDescription
from omost_schema.diff import describe_change, diff_canvases, repaint_rects


def _local(**changes: object) -> LocalDescription:
    values: dict[str, object] = {
        "location": "on the left",
        "offset": "no offset",
        "area": "a small square area",
        "distance_to_viewer": 2.0,
        "description": "a red dragon",
        "detailed_descriptions": ["wings spread"],
        "tags": "dragon",
        "atmosphere": "epic",
        "style": "painting",
        "quality_meta": "high detail",
        "HTML_web_color_name": "red",
    }
    values.update(changes)
    return LocalDescription.model_validate(values)


def _canvas(*locals_: LocalDescription, description: str = "a dragon over a castle") -> Canvas:
    glob = GlobalDescription(description=description, detailed_descriptions=[], tags="fantasy",
                             HTML_web_color_name="darkslateblue")  # fmt: skip
    return Canvas(global_description=glob, local_descriptions=list(locals_))


def test_no_change_gives_an_empty_diff() -> None:
    assert diff_canvases(_canvas(_local()), _canvas(_local())) == []


def test_a_new_canvas_is_all_added() -> None:
    changes = diff_canvases(None, _canvas(_local()))
    assert [(c.region, c.index, c.change) for c in changes] == [
        ("global", None, "added"),
        ("local", 0, "added"),
    ]


def test_a_moved_box_repaints_its_old_and_new_boxes() -> None:
    before, after = _local(), _local(location="on the right")
    (change,) = diff_canvases(_canvas(before), _canvas(after))
    assert change.change == "modified"
    assert change.aspects == ("box",)
    assert change.fields == ("location",)
    assert repaint_rects([change]) == [before.rect, after.rect]


def test_a_resized_box_is_a_box_change() -> None:
    (change,) = diff_canvases(_canvas(_local()), _canvas(_local(area="a large square area")))
    assert change.aspects == ("box",)
    assert change.old_rect != change.new_rect


def test_colour_text_and_distance_are_told_apart() -> None:
    edited = _local(HTML_web_color_name="blue", tags="blue dragon", distance_to_viewer=3.0)
    (change,) = diff_canvases(_canvas(_local()), _canvas(edited))
    assert change.aspects == ("color", "text", "distance")
    assert describe_change(change) == "local 0 modified (color, text, distance)"


def test_added_and_removed_regions_bring_their_one_box() -> None:
    one, two = _local(), _local(location="on the right")
    (added,) = diff_canvases(_canvas(one), _canvas(one, two))
    assert (added.change, added.old_rect, added.new_rect) == ("added", None, two.rect)
    (removed,) = diff_canvases(_canvas(one, two), _canvas(one))
    assert (removed.change, removed.index, removed.rects) == ("removed", 1, [two.rect])


def test_a_changed_global_description_names_its_fields_and_repaints_no_box() -> None:
    changes = diff_canvases(_canvas(_local()), _canvas(_local(), description="a dog"))
    assert [(c.region, c.fields) for c in changes] == [("global", ("description",))]
    assert repaint_rects(changes) == []
