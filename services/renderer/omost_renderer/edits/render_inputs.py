"""The worker's side of edits and init images: what it reads before a render, keeps after one.

Before a render, :func:`load_start` turns the job's ``edit`` (a region plan) or ``init`` into a
``RenderStart`` from the results store. After one, :func:`kept_for_edits` lists the files a later
edit needs (the canvas and parameters, the latents of every image), stored beside the images
under the attempt's prefix so that they expire, and are deleted, with them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from omost_renderer.edits.plans import (
    RenderRecord,
    decode_latents,
    encode_latents,
    latents_key,
    rects_of,
    render_record_key,
)
from omost_renderer.job_queue.jobs import JobRequest
from omost_renderer.pipelines.render_start import RenderStart, RepaintArea
from omost_renderer.pipelines.rendering import RenderedImage
from omost_renderer.storage.stores import ResultStore


class StartMissingError(ValueError):
    """A file the render starts from is gone (the base render's results expired)."""


def _get(store: ResultStore, key: str, what: str) -> bytes:
    data = store.get(key)
    if data is None:
        raise StartMissingError(f"{what} is no longer stored ({key}); it may have expired")
    return data


def _image(store: ResultStore, key: str, what: str) -> Image.Image:
    image = Image.open(io.BytesIO(_get(store, key, what)))
    image.load()
    return image


def load_start(request: JobRequest, store: ResultStore) -> RenderStart | None:
    """The start of a job's render, or ``None`` for a plain render from noise.

    Raises:
        StartMissingError: A stored file it needs is gone.
    """
    edit, init = request.edit, request.init
    if edit is not None and edit.mode == "region" and edit.latents_key is not None:
        return RenderStart(
            latents=decode_latents(_get(store, edit.latents_key, "the base render's latents")),
            keep_seed=edit.base_seed,
            repaint=RepaintArea(rects=rects_of(edit)),
            kept_image=_image(store, edit.image_key, "the base render's image").convert("RGB"),
        )
    if init is None:
        return None
    image = _image(store, init.image_key, "the init image").convert("RGB")
    repaint = None
    if init.mask_key is not None:
        mask = _image(store, init.mask_key, "the init mask").convert("L")
        repaint = RepaintArea(pixels=np.asarray(mask, dtype=np.float32) / 255.0)
    elif init.regions_only:
        repaint = RepaintArea(
            rects=tuple(local.rect for local in request.canvas.local_descriptions)
        )
    return RenderStart(
        image=image, strength=init.strength, keep_seed=request.params.seed, repaint=repaint
    )


def kept_for_edits(
    job_id: str, attempt: int, request: JobRequest, images: list[RenderedImage]
) -> tuple[list[tuple[str, bytes]], list[str | None]]:
    """The files a later edit of this render needs, and each image's latents key.

    Returns:
        ``(key, bytes)`` pairs to store (the record first), and per image the key of its latents
        (``None`` for an image whose renderer kept none).
    """
    record = RenderRecord(canvas=request.canvas, params=request.params, model=request.model)
    files = [(render_record_key(job_id, attempt), record.model_dump_json().encode())]
    keys: list[str | None] = []
    for n, rendered in enumerate(images):
        if not rendered.latents:
            keys.append(None)
            continue
        key = latents_key(job_id, attempt, n)
        files.append((key, encode_latents(rendered.latents)))
        keys.append(key)
    return files, keys
