"""Job records: the request a job carries, and the job as the API shows it."""

from __future__ import annotations

import json
from enum import StrEnum

from omost_schema import Canvas
from pydantic import BaseModel, ConfigDict

from omost_renderer.edits.init_images import InitImage
from omost_renderer.edits.plans import EditPlan, EditView
from omost_renderer.pipelines.rendering import RenderParams


class JobStatus(StrEnum):
    """Where a job is in its life; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        """Whether the job can no longer change."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


class JobRequest(BaseModel):
    """What a worker needs to run a job; stored as JSON in the job hash (never pickled)."""

    model_config = ConfigDict(extra="forbid")

    canvas: Canvas
    params: RenderParams
    #: An edit of an earlier render (``edit_of``), planned by the API.
    edit: EditPlan | None = None
    #: The user's image to start from (``init_image``), re-encoded into the results store.
    init: InitImage | None = None
    #: The served model that renders it (its stream); ``None``: a worker serving no named model.
    model: str | None = None


class CodeCorrection(BaseModel):
    """One change lenient parsing made to submitted Omost code."""

    kind: str
    original: str
    corrected: str
    line: int | None = None


class JobNotes(BaseModel):
    """What parsing the submitted Omost code corrected and warned about (stored with the job)."""

    corrections: list[CodeCorrection] = []
    warnings: list[str] = []


class ImageRecord(BaseModel):
    """One stored result image."""

    n: int
    seed: int
    key: str
    #: The image's final latents, kept for edits (``None``: its renderer kept none).
    latents_key: str | None = None


class Progress(BaseModel):
    """Denoising progress of the current attempt."""

    step: int
    total: int


class JobErrorInfo(BaseModel):
    """Why a job failed: ``{code, message}``."""

    code: str
    message: str


class ImageLink(BaseModel):
    """Where to fetch one result image and its seed."""

    n: int
    url: str
    seed: int


class JobView(BaseModel):
    """A job as ``GET /v1/renders/{id}`` shows it."""

    id: str
    status: JobStatus
    attempts: int
    max_attempts: int
    progress: Progress
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: JobErrorInfo | None = None
    images: list[ImageLink] = []
    queue_position: int | None = None
    corrections: list[CodeCorrection] = []
    warnings: list[str] = []
    #: How an edit (``edit_of``) renders: region or full, why, and its repaint mask.
    edit: EditView | None = None


def _float_or_none(value: str | None) -> float | None:
    return float(value) if value else None


def images_of(fields: dict[str, str]) -> list[ImageRecord]:
    """Return the result images recorded in a job hash."""
    raw = fields.get("images")
    if not raw:
        return []
    return [ImageRecord.model_validate(item) for item in json.loads(raw)]


def job_view(fields: dict[str, str], *, base_path: str) -> JobView:
    """Build the API view of a job from its Redis hash.

    Args:
        fields: The job hash, decoded to strings.
        base_path: URL path of the job (``/v1/renders/<id>``), prefix of its image URLs.

    Returns:
        The job as the API shows it.
    """
    error = None
    notes = JobNotes.model_validate_json(fields["notes"]) if fields.get("notes") else JobNotes()
    if fields.get("error_code"):
        error = JobErrorInfo(code=fields["error_code"], message=fields.get("error_message", ""))
    return JobView(
        id=fields["id"],
        status=JobStatus(fields["status"]),
        attempts=int(fields.get("attempt", "0")),
        max_attempts=int(fields.get("max_attempts", "0")),
        progress=Progress(step=int(fields.get("step", "0")), total=int(fields.get("total", "0"))),
        created_at=float(fields["created_at"]),
        started_at=_float_or_none(fields.get("started_at")),
        finished_at=_float_or_none(fields.get("finished_at")),
        error=error,
        images=[
            ImageLink(n=image.n, url=f"{base_path}/images/{image.n}", seed=image.seed)
            for image in images_of(fields)
        ],
        corrections=notes.corrections,
        warnings=notes.warnings,
        edit=_edit_view(fields, base_path),
    )


def _edit_view(fields: dict[str, str], base_path: str) -> EditView | None:
    if not fields.get("edit"):
        return None
    view = EditView.model_validate_json(fields["edit"])
    if fields.get("edit_mask"):
        view.mask_url = f"{base_path}/mask"
    return view
