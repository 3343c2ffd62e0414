"""Every bound of a render request: the value at the bound is queued, one step over answers 400."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_renderer import canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from omost_renderer.pipelines.rendering import (
    MAX_IMAGES,
    MAX_NEGATIVE_PROMPT_CHARS,
    MAX_REQUEST_PIXEL_STEPS,
    MAX_REQUEST_PIXELS,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MIN_STRENGTH,
    RenderParams,
)
from omost_schema import limits as canvas_limits

pytestmark = pytest.mark.redis

SMALL = {"width": 64, "height": 64}
# Under the pixel-step budget with the hires pass at the whole pixel budget: 25 base steps at
# 1024x1024 leave room for 93 hires steps at 2048x2048, not 94.
HIRES = {"width": 1024, "height": 1024, "hires_scale": 2.0, "steps": 25}

# (name, the request's parameters at the bound, one step over it, the param the error names)
BOUNDS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("width", {"width": MAX_SIDE, "height": 64}, {"width": MAX_SIDE + 64, "height": 64}, "width"),
    ("height", {"height": MAX_SIDE, "width": 64}, {"height": MAX_SIDE + 64, "width": 64}, "height"),
    ("steps", {**SMALL, "steps": MAX_STEPS}, {**SMALL, "steps": MAX_STEPS + 1}, "steps"),
    (
        "hires_steps",
        {**SMALL, "hires_scale": 2.0, "hires_steps": MAX_STEPS},
        {**SMALL, "hires_scale": 2.0, "hires_steps": MAX_STEPS + 1},
        "hires_steps",
    ),
    ("hires_scale", {**SMALL, "hires_scale": 2.0}, {**SMALL, "hires_scale": 2.01}, "hires_scale"),
    (
        "num_images",
        {**SMALL, "num_images": MAX_IMAGES},
        {**SMALL, "num_images": MAX_IMAGES + 1},
        "num_images",
    ),
    ("cfg", {**SMALL, "cfg": 30.0}, {**SMALL, "cfg": 30.01}, "cfg"),
    ("seed", {**SMALL, "seed": MAX_SEED}, {**SMALL, "seed": MAX_SEED + 1}, "seed"),
    (
        "negative_prompt",
        {**SMALL, "negative_prompt": "x" * MAX_NEGATIVE_PROMPT_CHARS},
        {**SMALL, "negative_prompt": "x" * (MAX_NEGATIVE_PROMPT_CHARS + 1)},
        "negative_prompt",
    ),
    (
        "sketch_strength",
        {**SMALL, "sketch_strength": MIN_STRENGTH},
        {**SMALL, "sketch_strength": 0.09},
        "sketch_strength",
    ),
    (
        "hires_denoise",
        {**SMALL, "hires_scale": 1.5, "hires_denoise": MIN_STRENGTH},
        {**SMALL, "hires_scale": 1.5, "hires_denoise": 0.09},
        "hires_denoise",
    ),
    (
        "pixels",
        {"width": 1024, "height": 1024, "num_images": 4, "steps": 1},
        {"width": 1024, "height": 1088, "num_images": 4, "steps": 1},
        "num_images",
    ),
    (
        "pixels with hires",
        {"width": 1024, "height": 1024, "hires_scale": 2.0, "steps": 1, "hires_steps": 1},
        {"width": 1024, "height": 1088, "hires_scale": 2.0, "steps": 1, "hires_steps": 1},
        "hires_scale",
    ),
    (
        "pixel-steps",
        {"width": 2048, "height": 2048, "steps": MAX_STEPS},
        {"width": 2048, "height": 2048, "steps": MAX_STEPS, "hires_scale": 1.01},
        "hires_steps",
    ),
    (
        "pixel-steps with hires",
        {**HIRES, "hires_steps": 93},
        {**HIRES, "hires_steps": 94},
        "hires_steps",
    ),
]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _canvas(locals_: int = 1) -> dict[str, Any]:
    canvas = canvas_json()
    local = canvas["local_descriptions"][0]  # type: ignore[index]
    canvas["local_descriptions"] = [local] * locals_
    return canvas


def test_budgets_are_what_the_docs_say() -> None:
    # docs/api.md states these numbers; they follow from 2048x2048 and 100 steps.
    assert MAX_REQUEST_PIXELS == 4_194_304
    assert MAX_REQUEST_PIXEL_STEPS == 419_430_400
    at_bound = RenderParams(width=1024, height=1024, num_images=4)
    assert at_bound.request_pixels() == MAX_REQUEST_PIXELS
    default_four = RenderParams(num_images=4)  # Omost's 896x1152, four images
    assert default_four.request_pixels() <= MAX_REQUEST_PIXELS


@pytest.mark.parametrize(
    ("at_bound", "over", "param"), [b[1:] for b in BOUNDS], ids=[b[0] for b in BOUNDS]
)
def test_a_request_at_a_bound_is_queued_and_one_step_over_answers_400(
    client: TestClient, at_bound: dict[str, Any], over: dict[str, Any], param: str
) -> None:
    accepted = client.post("/v1/renders", json={"canvas": _canvas(), **at_bound})
    assert accepted.status_code == 202, accepted.text
    refused = client.post("/v1/renders", json={"canvas": _canvas(), **over})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_the_budget_error_says_the_numbers(client: TestClient) -> None:
    over = {"width": 1024, "height": 1088, "num_images": 4}
    error = client.post("/v1/renders", json={"canvas": _canvas(), **over}).json()["error"]
    assert str(1024 * 1088 * 4) in error["message"]
    assert str(MAX_REQUEST_PIXELS) in error["message"]


def test_a_canvas_over_its_region_limit_answers_400(client: TestClient) -> None:
    most = canvas_limits.MAX_LOCAL_DESCRIPTIONS
    accepted = client.post("/v1/renders", json={"canvas": _canvas(most), **SMALL})
    assert accepted.status_code == 202, accepted.text
    refused = client.post("/v1/renders", json={"canvas": _canvas(most + 1), **SMALL})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "canvas.local_descriptions"


def test_images_api_refuses_a_size_and_n_over_the_budget_before_asking_the_llm(
    client: TestClient,
) -> None:
    # The LLM URL of the test settings is unreachable: a 502 would mean the LLM was asked.
    response = client.post(
        "/v1/images/generations", json={"prompt": "a cat", "size": "2048x2048", "n": 2}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "n"
