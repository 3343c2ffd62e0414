"""The API's side of edits (``edit_of``) and init images (``init_image``) of ``POST /v1/renders``.

An edit loads its base render through the caller's own lookup (another key's render is answered
404, as if it did not exist), reads the base's record from the results store, plans the edit
(``edits.plan_edit``) and stores the picture of its repaint area. An init image is checked,
re-encoded at the render's size and stored. Stored inputs are named by the digest of their bytes,
so the same request always names the same files (an ``Idempotency-Key`` still matches it), and
live in their own top-level folder, which the results cleanup removes by age like a job's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import anyio
import numpy as np
from omost_schema import Canvas, Rect
from omost_schema.repaint import repaint_mask, repaint_overlay_png

from omost_renderer.edits.init_images import (
    InitImage,
    InitImageError,
    InitImageRequest,
    decode_data_url,
    reencode,
)
from omost_renderer.edits.plans import EditOf, RenderRecord, edit_params, plan_edit
from omost_renderer.errors import ConflictError, InvalidRequestError, NotFoundError
from omost_renderer.job_queue.jobs import JobRequest, JobStatus, images_of
from omost_renderer.storage.stores import ResultStore

#: Loads a job hash the caller may see (raises ``NotFoundError`` otherwise).
JobLoader = Callable[[str], Awaitable[dict[str, str]]]
#: Job hash fields of an edit: its view, and the key of its repaint picture.
EDIT_FIELD = "edit"
EDIT_MASK_FIELD = "edit_mask"
#: Job hash field naming the record of a render's canvas and parameters.
RENDER_RECORD_FIELD = "render_record"


def input_key(data: bytes, name: str) -> str:
    """The storage key of an uploaded or computed input, named by the digest of its bytes.

    The file sits directly in its folder, so writing it again (the same input sent again)
    refreshes the folder's age, which is what the file store's cleanup goes by.
    """
    return f"{hashlib.sha256(data).hexdigest()[:32]}/{name}"


async def _put(store: ResultStore, key: str, data: bytes) -> None:
    await anyio.to_thread.run_sync(store.put, key, data)


async def plan_edit_request(
    store: ResultStore,
    load: JobLoader,
    edit_of: EditOf,
    job: JobRequest,
    fields_set: set[str],
) -> tuple[JobRequest, dict[str, str]]:
    """Resolve ``edit_of``: the job's request with its plan, and the job hash fields to add.

    Args:
        store: The results store.
        load: The caller's job lookup.
        edit_of: The base render and image.
        job: The edit's request as submitted (its canvas and parameters).
        fields_set: Parameters the request set explicitly (the rest come from the base).

    Raises:
        NotFoundError: No such render of the caller, no such image, or its results expired.
        ConflictError: The base render has not succeeded.
    """
    base_fields = await load(edit_of.render_id)
    status = JobStatus(base_fields["status"])
    if status is not JobStatus.SUCCEEDED:
        raise ConflictError(
            f"render {edit_of.render_id!r} is {status}; only a finished render can be edited",
            code="edit_base_not_ready",
        )
    image = next((im for im in images_of(base_fields) if im.n == edit_of.image), None)
    record_key = base_fields.get(RENDER_RECORD_FIELD)
    raw = await anyio.to_thread.run_sync(store.get, record_key) if record_key else None
    if image is None or raw is None:
        raise NotFoundError(
            f"render {edit_of.render_id!r} has no image {edit_of.image} kept for edits",
            param="edit_of.image",
        )
    base = RenderRecord.model_validate_json(raw)
    params = edit_params(base.params, job.params, fields_set)
    if "seed" not in fields_set:
        params = params.model_copy(update={"seed": image.seed})
    plan = plan_edit(
        base,
        job.canvas,
        params,
        job.model,
        edit_of=edit_of,
        base_seed=image.seed,
        image_key=image.key,
        latents_key=image.latents_key,
    )
    fields = {EDIT_FIELD: plan.view().model_dump_json()}
    if plan.mode == "region":
        png = await anyio.to_thread.run_sync(
            _overlay, job.canvas, [Rect(*r) for r in plan.rects], params.width, params.height
        )
        key = input_key(png, "repaint.png")
        await _put(store, key, png)
        fields[EDIT_MASK_FIELD] = key
    planned = job.model_copy(update={"params": params, "edit": plan})
    return planned, fields


def _overlay(canvas: Canvas, rects: list[Rect], width: int, height: int) -> bytes:
    return repaint_overlay_png(canvas, repaint_mask(rects, width, height), width, height)


async def store_init_image(
    store: ResultStore, init: InitImageRequest, job: JobRequest
) -> JobRequest:
    """Check, re-encode and store an init image (and its mask); the job's request with it.

    Raises:
        InvalidRequestError: The image or mask is not usable (the message says why).
    """
    try:
        image_png, mask_png = await anyio.to_thread.run_sync(
            _reencoded, init, job.params.width, job.params.height
        )
    except InitImageError as error:
        raise InvalidRequestError(f"{error.param}: {error}", param=error.param) from None
    image_key = input_key(image_png, "init.png")
    await _put(store, image_key, image_png)
    mask_key = None
    if mask_png is not None:
        mask_key = input_key(mask_png, "mask.png")
        await _put(store, mask_key, mask_png)
    record = InitImage(
        image_key=image_key,
        strength=init.strength,
        mask_key=mask_key,
        regions_only=init.regions_only,
    )
    return job.model_copy(update={"init": record})


def _reencoded(init: InitImageRequest, width: int, height: int) -> tuple[bytes, bytes | None]:
    # Decoding is CPU work: it runs in a thread, off the event loop.
    image_png = reencode(decode_data_url(init.image, "init_image.image"), width, height)
    if init.mask is None:
        return image_png, None
    mask = decode_data_url(init.mask, "init_image.mask")
    return image_png, reencode(mask, width, height, mask=True)


async def resolve_inputs(
    store: ResultStore,
    load: JobLoader,
    job: JobRequest,
    *,
    edit_of: EditOf | None,
    init_image: InitImageRequest | None,
    fields_set: set[str],
) -> tuple[JobRequest, dict[str, str]]:
    """The job's request with its edit plan or init image, and the job hash fields to add.

    Raises:
        InvalidRequestError: A bad init image, or both an edit and an init image.
        NotFoundError: The base render is not the caller's, or its results expired.
        ConflictError: The base render has not succeeded.
    """
    if edit_of is not None and init_image is not None:
        raise InvalidRequestError("give `edit_of` or `init_image`, not both", param="init_image")
    if edit_of is not None:
        return await plan_edit_request(store, load, edit_of, job, fields_set)
    if init_image is not None:
        return await store_init_image(store, init_image, job), {}
    return job, {}


async def repaint_picture(store: ResultStore, fields: dict[str, str]) -> bytes | None:
    """The repaint area of a job over its sketch (PNG), or ``None`` when its canvas is gone.

    A region edit's is its changed boxes, stored when it was submitted; any other render
    repaints the whole canvas, drawn from its request while it lives or from the record of
    its canvas once it has succeeded.
    """
    key = fields.get(EDIT_MASK_FIELD)
    if key:
        return await anyio.to_thread.run_sync(store.get, key)
    if fields.get("request"):
        job = JobRequest.model_validate_json(fields["request"])
        canvas, width, height = job.canvas, job.params.width, job.params.height
    else:
        record_key = fields.get(RENDER_RECORD_FIELD)
        raw = await anyio.to_thread.run_sync(store.get, record_key) if record_key else None
        if raw is None:
            return None
        record = RenderRecord.model_validate_json(raw)
        canvas, width, height = record.canvas, record.params.width, record.params.height
    everything = np.ones((1, 1), dtype=np.float32)
    return await anyio.to_thread.run_sync(repaint_overlay_png, canvas, everything, width, height)
