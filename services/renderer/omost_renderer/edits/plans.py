"""Edits that keep the image: what a render keeps for later edits, and how an edit is planned.

Every render keeps, beside its images in the results store, a record of its canvas and
parameters (``render.json``) and the final latents of each image (``<n>.latents.npz``). An edit
(``edit_of``) names one image of an earlier render; :func:`plan_edit` diffs the two canvases
region by region (``omost_schema.diff``) and decides:

- ``region``: repaint the union of the old and new boxes of the changed local regions (dilated
  and feathered, ``omost_schema.repaint``) and keep the rest of the base image;
- ``full``: render everything again, with the reason (the global description, the size or the
  model changed, or the base kept no latents).
"""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from omost_schema import Canvas, Rect
from omost_schema.diff import Aspect, RegionChange, describe_change, diff_canvases, repaint_rects
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from omost_renderer.pipelines.rendering import MAX_IMAGES, RenderParams

#: Job ids are 32 hex digits (``uuid4().hex``).
JobId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
#: The record of a render's canvas and parameters, per attempt, beside its images.
RENDER_RECORD_NAME = "render.json"
#: Parameters an edit takes from its base render unless the request sets them.
_INHERITED = ("width", "height", "steps", "cfg", "negative_prompt", "hires_scale",
              "hires_steps", "hires_denoise", "sketch_strength", "mask_mode")  # fmt: skip


def render_record_key(job_id: str, attempt: int) -> str:
    """Storage key of the record of one attempt's canvas and parameters."""
    return f"{job_id}/{attempt}/{RENDER_RECORD_NAME}"


def latents_key(job_id: str, attempt: int, n: int) -> str:
    """Storage key of the final latents of result image ``n`` of one attempt."""
    return f"{job_id}/{attempt}/{n}.latents.npz"


def encode_latents(latents: dict[str, npt.NDArray[np.float32]]) -> bytes:
    """The latents of one image as an ``.npz`` file (float16: half the bytes, ample for a base)."""
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {name: array.astype(np.float16) for name, array in latents.items()}
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def decode_latents(data: bytes) -> dict[str, npt.NDArray[np.float32]]:
    """Read latents written by :func:`encode_latents` (never unpickling)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name].astype(np.float32) for name in archive.files}


class RenderRecord(BaseModel):
    """What a later edit needs of a render: its canvas and its parameters."""

    model_config = ConfigDict(extra="forbid")

    canvas: Canvas
    params: RenderParams
    model: str | None = None


class EditOf(BaseModel):
    """``edit_of`` of ``POST /v1/renders``: the image of an earlier render to edit."""

    model_config = ConfigDict(extra="forbid")

    render_id: JobId = Field(description="Id of an earlier render of the same API key.")
    image: Annotated[int, Field(ge=0, le=MAX_IMAGES - 1)] = Field(
        default=0, description="Which of its images (`n`) to keep outside the repaint area."
    )


class ChangedRegion(BaseModel):
    """One region of the edit's diff."""

    region: Literal["global", "local"]
    index: int | None
    change: Literal["added", "modified", "removed"]
    fields: list[str] = []
    aspects: list[Aspect] = []


class EditView(BaseModel):
    """How an edit renders, as its job view and events show it.

    Attributes:
        render_id: The base render.
        image: The base image.
        mode: ``region`` repaints the changed boxes only; ``full`` renders everything again.
        reason: Why a full render, or what the region edit repaints.
        changed_regions: The canvas diff.
        mask_url: The repaint area drawn over the sketch (PNG), for region edits.
    """

    render_id: str
    image: int
    mode: Literal["region", "full"]
    reason: str
    changed_regions: list[ChangedRegion] = []
    mask_url: str | None = None


class EditPlan(EditView):
    """An edit's plan on the job request: the view plus what the worker reads.

    Attributes:
        rects: Boxes on the 90x90 grid the region edit repaints (old and new boxes).
        base_seed: Seed of the base image (its noise re-noises the kept part).
        image_key: Storage key of the base image.
        latents_key: Storage key of the base image's latents.
    """

    rects: list[tuple[int, int, int, int]] = []
    base_seed: int = 0
    image_key: str = ""
    latents_key: str | None = None

    def view(self) -> EditView:
        """The plan without its storage keys."""
        return EditView.model_validate(self.model_dump(include=set(EditView.model_fields)))


def edit_params(base: RenderParams, request: RenderParams, fields_set: set[str]) -> RenderParams:
    """The edit's parameters: the base's, overridden by those the request sets explicitly.

    The seed is the base image's unless the request sets one (then new noise fills the repaint
    area and the outside is still kept).
    """
    values = request.model_dump()
    for name in _INHERITED:
        if name not in fields_set:
            values[name] = getattr(base, name)
    return RenderParams.model_validate(values)


def _changed(change: RegionChange) -> ChangedRegion:
    return ChangedRegion(
        region=change.region,
        index=change.index,
        change=change.change,
        fields=list(change.fields),
        aspects=list(change.aspects),
    )


def plan_edit(
    base: RenderRecord,
    canvas: Canvas,
    params: RenderParams,
    model: str | None,
    *,
    edit_of: EditOf,
    base_seed: int,
    image_key: str,
    latents_key: str | None,
) -> EditPlan:
    """Decide how an edit of ``base`` into ``canvas`` renders.

    Args:
        base: The base render's record.
        canvas: The edited canvas.
        params: The edit's parameters (see :func:`edit_params`).
        model: The model the edit renders with.
        edit_of: Which render and image.
        base_seed: The base image's seed.
        image_key: Where the base image is stored.
        latents_key: Where its latents are stored (``None``: it kept none).

    Returns:
        A ``region`` plan with the boxes to repaint, or a ``full`` plan with its reason.
    """
    changes = diff_canvases(base.canvas, canvas)
    common = {
        "render_id": edit_of.render_id,
        "image": edit_of.image,
        "changed_regions": [_changed(c) for c in changes],
        "base_seed": base_seed,
        "image_key": image_key,
        "latents_key": latents_key,
    }
    reason = _full_render_reason(base, params, model, changes, latents_key)
    if reason is not None:
        return EditPlan(mode="full", reason=reason, **common)
    rects = repaint_rects(changes)
    described = "; ".join(describe_change(c) for c in changes)
    what = f"repaints {described}" if changes else "nothing changed: the base image is kept"
    return EditPlan(mode="region", reason=what, rects=[tuple(r) for r in rects], **common)


def _full_render_reason(
    base: RenderRecord,
    params: RenderParams,
    model: str | None,
    changes: list[RegionChange],
    latents: str | None,
) -> str | None:
    glob = next((c for c in changes if c.region == "global"), None)
    if glob is not None:
        return (
            f"the global description changed ({', '.join(glob.fields)}): every pixel depends on it"
        )
    old, new = base.params, params
    if (old.width, old.height) != (new.width, new.height):
        return f"the size changed from {old.width}x{old.height} to {new.width}x{new.height}"
    if old.hires != new.hires or (old.hires and old.hires_scale != new.hires_scale):
        return f"the hires scale changed from {old.hires_scale} to {new.hires_scale}"
    if old.mask_mode != new.mask_mode:
        return f"the mask mode changed from {old.mask_mode} to {new.mask_mode}"
    if base.model != model:
        return f"the model changed from {base.model or 'the default'} to {model or 'the default'}"
    if latents is None:
        return "the base render kept no latents to edit"
    return None


def rects_of(plan: EditPlan) -> tuple[Rect, ...]:
    """The plan's repaint boxes as ``Rect``."""
    return tuple(Rect(*rect) for rect in plan.rects)


def edit_event(plan: EditPlan, job_id: str) -> dict[str, object]:
    """The edit as the job's first ``status`` event carries it (with the mask's URL)."""
    view = plan.view()
    if plan.mode == "region":
        view.mask_url = f"/v1/renders/{job_id}/mask"
    return view.model_dump(mode="json")
