"""Small HTTP client of the two services for the ``omost`` command."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from omost_schema import Canvas

_FINAL = {"succeeded", "failed", "canceled"}
_BAR_WIDTH = 30
# What a job id may look like before it goes into a URL path or a file name: the service's ids
# are hex; anything with a separator or a dot could climb out of the output folder.
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class ServiceError(RuntimeError):
    """A service answered with an error; the message is the service's own."""


class UnsafeAnswerError(ServiceError):
    """A service answered with something the client refuses to act on (a path or a host)."""


def _client(api_key: str | None, **options: Any) -> httpx.Client:
    """An HTTP client that sends ``api_key`` as ``Authorization: Bearer`` when one is given."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(headers=headers, **options)


def checked_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is safe in a URL path and a file name.

    Raises:
        UnsafeAnswerError: It is not a plain id (a separator, a dot, empty, too long).
    """
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise UnsafeAnswerError(f"refusing the job id {job_id!r}: not a plain id")
    return job_id


def image_url(renderer_url: str, url: object) -> httpx.URL:
    """Resolve an image URL of a job against the renderer; refuse one on another origin.

    Raises:
        UnsafeAnswerError: The URL points at another scheme, host or port.
    """
    base = httpx.URL(renderer_url)
    if not isinstance(url, str):
        raise UnsafeAnswerError(f"refusing the image URL {url!r}")
    target = base.join(url)
    if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
        raise UnsafeAnswerError(
            f"refusing the image URL {url!r}: not on the renderer at {renderer_url}"
        )
    return target


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.is_success:
        body: dict[str, Any] = response.json()
        return body
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
    raise ServiceError(f"{response.request.url} answered {response.status_code}: {message}")


def _chat_turns(prompt: str, previous_canvas: dict[str, Any] | None) -> list[dict[str, str]]:
    # An edit as ``POST /v1/canvases`` sends it: the previous canvas's description, the canvas as
    # the model's own answer (a fenced python block), then the new request.
    turns: list[dict[str, str]] = []
    if previous_canvas is not None:
        previous = Canvas.model_validate(previous_canvas)
        turns += [
            {"role": "user", "content": previous.global_description.description},
            {"role": "assistant", "content": f"```python\n{previous.to_code()}```"},
        ]
    return [*turns, {"role": "user", "content": prompt}]


def draw_token_bar(tokens: int, total: int, started: float) -> None:
    """Draw the token progress bar of a canvas being written, on one line of stderr."""
    filled = _BAR_WIDTH * min(tokens, total) // max(total, 1)
    bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
    rate = tokens / max(time.monotonic() - started, 1e-6)
    print(f"\r  canvas [{bar}] {tokens}/{total} tokens {rate:.1f}/s   ", end="", file=sys.stderr)


def compose_canvas(
    llm_url: str,
    prompt: str,
    *,
    previous_canvas: dict[str, Any] | None,
    seed: int | None,
    max_tokens: int = 4096,
    on_tokens: Callable[[int, int], None] | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Ask the LLM service for a canvas, streamed, and return ``{canvas, code, corrections}``.

    The chat stream (``/v1/chat/completions`` with ``stream_options.continuous_usage_stats``)
    reports the tokens written so far with each chunk; ``on_tokens(tokens, max_tokens)`` gets
    them as they come. ``api_key`` is sent as a Bearer key, when given.

    Raises:
        ServiceError: The service answered with an error, or the stream ended without a canvas.
    """
    with _client(api_key, timeout=httpx.Timeout(600.0, connect=10.0)) as client:
        models = _check(client.get(f"{llm_url}/v1/models"))
        body: dict[str, Any] = {
            "model": models["data"][0]["id"],
            "messages": _chat_turns(prompt, previous_canvas),
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        if seed is not None:
            body["seed"] = seed
        with client.stream("POST", f"{llm_url}/v1/chat/completions", json=body) as response:
            if not response.is_success:
                response.read()
                _check(response)
            omost = _read_chat_stream(response, max_tokens, on_tokens)
    canvas = Canvas.model_validate(omost["canvas"])
    return {
        "canvas": omost["canvas"],
        "code": canvas.to_code(),
        "corrections": omost.get("corrections", []),
    }


def _read_chat_stream(
    response: httpx.Response, max_tokens: int, on_tokens: Callable[[int, int], None] | None
) -> dict[str, Any]:
    omost: dict[str, Any] | None = None
    for line in response.iter_lines():
        if not line.startswith("data:") or line[5:].strip() == "[DONE]":
            continue
        chunk = json.loads(line[5:])
        if "error" in chunk:
            raise ServiceError(f"{response.request.url} failed: {chunk['error'].get('message')}")
        usage = chunk.get("usage")
        if usage and on_tokens is not None:
            on_tokens(int(usage["completion_tokens"]), max_tokens)
        omost = chunk.get("omost") or omost
    if omost is None:
        raise ServiceError(f"{response.request.url} ended its stream without a canvas")
    return omost


def submit_render(
    renderer_url: str, body: dict[str, Any], *, api_key: str | None = None
) -> dict[str, Any]:
    """Queue a render (``POST /v1/renders``) and return the new job.

    ``api_key`` is sent as a Bearer key, when given.

    Raises:
        ServiceError: The service answered with an error.
        UnsafeAnswerError: The answer's job id is not a plain id.
    """
    with _client(api_key, timeout=30.0) as client:
        job = _check(client.post(f"{renderer_url}/v1/renders", json=body))
    checked_job_id(job.get("id"))
    return job


def _draw_bar(job: dict[str, Any]) -> None:
    progress = job.get("progress") or {}
    step, total = int(progress.get("step", 0)), int(progress.get("total", 0)) or 1
    filled = _BAR_WIDTH * step // total
    where = f" queue position {job['queue_position']}" if job.get("queue_position") else ""
    bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
    print(f"\r{job['status']:>9} [{bar}] {step}/{total}{where}   ", end="", file=sys.stderr)


def follow_job(
    renderer_url: str,
    job_id: str,
    *,
    timeout_s: float = 3600.0,
    interval_s: float = 0.5,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Poll a job, drawing a progress bar on stderr, until it ends; return its final view.

    ``api_key`` is sent as a Bearer key, when given.

    Raises:
        ServiceError: If the service answers with an error.
        TimeoutError: If the job has not ended within ``timeout_s``.
    """
    checked_job_id(job_id)
    deadline = time.monotonic() + timeout_s
    with _client(api_key, timeout=30.0) as client:
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


def save_images(
    renderer_url: str, job: dict[str, Any], out_dir: Path, *, api_key: str | None = None
) -> list[Path]:
    """Download every result image of a finished job into ``out_dir``; return the paths.

    The server's answer is not trusted with the file system: the job id must be a plain id, the
    image number and seed integers, and every image URL on the renderer's own origin, so a
    hostile or broken server can neither write outside ``out_dir`` nor send the client elsewhere
    (nor learn ``api_key``, sent as a Bearer key to the renderer's origin only).

    Raises:
        ServiceError: An image could not be fetched.
        UnsafeAnswerError: The answer names an unsafe id, number or URL.
    """
    job_id = checked_job_id(job.get("id"))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with _client(api_key, timeout=60.0, follow_redirects=False) as client:
        for image in job.get("images", []):
            n, seed = image.get("n"), image.get("seed")
            if type(n) is not int or type(seed) is not int:
                raise UnsafeAnswerError(f"refusing image number {n!r} with seed {seed!r}")
            response = client.get(image_url(renderer_url, image.get("url")))
            if not response.is_success:
                raise ServiceError(f"image {n} answered {response.status_code}")
            path = out_dir / f"{job_id}-{n}-seed{seed}.png"
            path.write_bytes(response.content)
            paths.append(path)
    return paths
