"""What changed between two canvases, region by region: the one diff both services share.

Local descriptions are matched by position (the LLM rewrites the whole program each turn and
keeps the order of the regions it does not touch). A changed local region says which aspects
changed: its box (``location``, ``offset``, ``area``: moved or resized), its colour, its text, or
its distance to the viewer. A renderer repaints the union of the old and new boxes of every
changed local region; a changed global description changes every pixel, so it asks for a full
render.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from omost_schema.code_calls import GLOBAL_METHOD, LOCAL_METHOD, SIGNATURES
from omost_schema.geometry import Rect

if TYPE_CHECKING:
    from omost_schema.canvas import Canvas, GlobalDescription, LocalDescription

ChangeKind = Literal["added", "modified", "removed"]
#: What about a local region changed: its box, its colour, its text, its distance to the viewer.
Aspect = Literal["box", "color", "text", "distance"]

# The fields compared are the arguments of Omost's two methods.
GLOBAL_FIELDS = SIGNATURES[GLOBAL_METHOD]
LOCAL_FIELDS = SIGNATURES[LOCAL_METHOD]
_ASPECT_OF: dict[str, Aspect] = {
    "location": "box",
    "offset": "box",
    "area": "box",
    "HTML_web_color_name": "color",
    "distance_to_viewer": "distance",
}


@dataclass(frozen=True)
class RegionChange:
    """One region that differs between two canvases.

    Attributes:
        region: ``global`` or ``local``.
        index: Position of the local description (in the new canvas, or the old one when
            removed); ``None`` for the global one.
        change: ``added``, ``modified`` or ``removed``.
        fields: Names of the fields that differ (empty when added or removed).
        aspects: What changed, in ``box``, ``color``, ``text``, ``distance`` order.
        old_rect: The region's box on the 90x90 grid before (``None`` when added or global).
        new_rect: Its box after (``None`` when removed or global).
    """

    region: Literal["global", "local"]
    index: int | None
    change: ChangeKind
    fields: tuple[str, ...] = ()
    aspects: tuple[Aspect, ...] = ()
    old_rect: Rect | None = None
    new_rect: Rect | None = None

    @property
    def rects(self) -> list[Rect]:
        """The old and new boxes of the region (what a repaint has to cover)."""
        return [rect for rect in (self.old_rect, self.new_rect) if rect is not None]


def _changed_fields(
    before: GlobalDescription | LocalDescription,
    after: GlobalDescription | LocalDescription,
    names: tuple[str, ...],
) -> tuple[str, ...]:
    return tuple(name for name in names if getattr(before, name) != getattr(after, name))


def _aspects(fields: tuple[str, ...]) -> tuple[Aspect, ...]:
    found = {_ASPECT_OF.get(name, "text") for name in fields}
    return tuple(aspect for aspect in ("box", "color", "text", "distance") if aspect in found)


def diff_canvases(previous: Canvas | None, current: Canvas) -> list[RegionChange]:
    """Regions of ``current`` that differ from ``previous``, local descriptions matched by position.

    Args:
        previous: The canvas being edited, or ``None`` for a new canvas (everything is added).
        current: The new canvas.

    Returns:
        The changes, the global region first, then locals in program order.
    """
    locals_now = current.local_descriptions
    if previous is None:
        added = [RegionChange("global", None, "added")]
        return added + [
            RegionChange("local", i, "added", new_rect=local.rect)
            for i, local in enumerate(locals_now)
        ]
    changes: list[RegionChange] = []
    glob = _changed_fields(previous.global_description, current.global_description, GLOBAL_FIELDS)
    if glob:
        changes.append(RegionChange("global", None, "modified", fields=glob))
    old = previous.local_descriptions
    for i in range(max(len(old), len(locals_now))):
        if i >= len(old):
            changes.append(RegionChange("local", i, "added", new_rect=locals_now[i].rect))
        elif i >= len(locals_now):
            changes.append(RegionChange("local", i, "removed", old_rect=old[i].rect))
        else:
            fields = _changed_fields(old[i], locals_now[i], LOCAL_FIELDS)
            if fields:
                changes.append(
                    RegionChange(
                        "local",
                        i,
                        "modified",
                        fields=fields,
                        aspects=_aspects(fields),
                        old_rect=old[i].rect,
                        new_rect=locals_now[i].rect,
                    )
                )
    return changes


def repaint_rects(changes: list[RegionChange]) -> list[Rect]:
    """The boxes a region edit repaints: the old and new box of every changed local region."""
    return [rect for change in changes if change.region == "local" for rect in change.rects]


def describe_change(change: RegionChange) -> str:
    """One line for people: ``local 1 modified (box, color)``."""
    name = "global" if change.index is None else f"{change.region} {change.index}"
    detail = f" ({', '.join(change.aspects or change.fields)})" if change.fields else ""
    return f"{name} {change.change}{detail}"
