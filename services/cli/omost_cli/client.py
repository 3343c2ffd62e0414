"""Small HTTP client of the two services for the ``omost`` command."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx

_FINAL = {"succeeded", "failed", "canceled"}
_BAR_WIDTH = 30


class ServiceError(RuntimeError):
    """A service answered with an error; the message is the service's own."""


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.is_success:
        body: dict[str, Any] = response.json()
        return body
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
    raise ServiceError(f"{response.request.url} answered {response.status_code}: {message}")


def compose_canvas(
    llm_url: str, prompt: str, *, previous_canvas: dict[str, Any] | None, seed: int | None
) -> dict[str, Any]:
    """Ask the LLM service for a canvas (``POST /v1/canvases``) and return its answer."""
    body: dict[str, Any] = {"prompt": prompt}
    if previous_canvas is not None:
        body["previous_canvas"] = previous_canvas
    if seed is not None:
        body["seed"] = seed
    with httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
        return _check(client.post(f"{llm_url}/v1/canvases", json=body))


def submit_render(renderer_url: str, body: dict[str, Any]) -> dict[str, Any]:
    """Queue a render (``POST /v1/renders``) and return the new job."""
    with httpx.Client(timeout=30.0) as client:
        return _check(client.post(f"{renderer_url}/v1/renders", json=body))


def _draw_bar(job: dict[str, Any]) -> None:
    progress = job.get("progress") or {}
    step, total = int(progress.get("step", 0)), int(progress.get("total", 0)) or 1
    filled = _BAR_WIDTH * step // total
    where = f" queue position {job['queue_position']}" if job.get("queue_position") else ""
    bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
    print(f"\r{job['status']:>9} [{bar}] {step}/{total}{where}   ", end="", file=sys.stderr)


def follow_job(
    renderer_url: str, job_id: str, *, timeout_s: float = 3600.0, interval_s: float = 0.5
) -> dict[str, Any]:
    """Poll a job, drawing a progress bar on stderr, until it ends; return its final view.

    Raises:
        ServiceError: If the service answers with an error.
        TimeoutError: If the job has not ended within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=30.0) as client:
        while True:
            job = _check(client.get(f"{renderer_url}/v1/renders/{job_id}"))
            _draw_bar(job)
            if job["status"] in _FINAL:
                print(file=sys.stderr)
                return job
            if time.monotonic() > deadline:
                print(file=sys.stderr)
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s:.0f} s")
            time.sleep(interval_s)


def save_images(renderer_url: str, job: dict[str, Any], out_dir: Path) -> list[Path]:
    """Download every result image of a finished job into ``out_dir``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with httpx.Client(timeout=60.0) as client:
        for image in job.get("images", []):
            response = client.get(httpx.URL(renderer_url).join(image["url"]))
            if not response.is_success:
                raise ServiceError(f"image {image['n']} answered {response.status_code}")
            path = out_dir / f"{job['id']}-{image['n']}-seed{image['seed']}.png"
            path.write_bytes(response.content)
            paths.append(path)
    return paths
