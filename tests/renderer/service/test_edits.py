"""Edits that keep the image, through the API and a worker running the tiny pipeline."""

from __future__ import annotations

import base64
import copy
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fake_renderer import canvas_json
from fastapi.testclient import TestClient
from omost_renderer.api import create_app
from omost_renderer.config import Settings
from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer
from omost_schema import Canvas
from omost_schema.repaint import repaint_mask
from PIL import Image
from service_support import WorkerThread, make_settings, wait_for

pytestmark = pytest.mark.redis

SIZE = 128


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def tiny_worker(start_worker: Callable[..., WorkerThread]) -> WorkerThread:
    return start_worker(build_tiny_renderer())


def _canvas(color: str = "red", description: str = "a cat on a sofa") -> dict[str, object]:
    canvas = canvas_json(description)
    local = copy.deepcopy(canvas["local_descriptions"][0])  # type: ignore[index]
    local.update(location="on the left", area="a small square area", HTML_web_color_name=color)
    canvas["local_descriptions"] = [local]
    return canvas


def _done(client: TestClient, job_id: str) -> dict[str, object]:
    seen: dict[str, object] = {}

    def finished() -> bool:
        seen.update(client.get(f"/v1/renders/{job_id}").json())
        return seen["status"] in ("succeeded", "failed", "canceled")

    wait_for(finished, what=f"job {job_id} to finish", timeout=120)
    assert seen["status"] == "succeeded", seen
    return seen


def _pixels(client: TestClient, job_id: str) -> np.ndarray:
    response = client.get(f"/v1/renders/{job_id}/images/0")
    assert response.status_code == 200
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.float64)


def _render(client: TestClient, **body: object) -> dict[str, object]:
    values: dict[str, object] = {"width": SIZE, "height": SIZE, "steps": 6, "seed": 3}
    values.update(body)
    response = client.post("/v1/renders", json=values)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def test_region_edit_keeps_the_outside_and_repaints_the_changed_box(
    client: TestClient, tiny_worker: WorkerThread
) -> None:
    base = _done(client, str(_render(client, canvas=_canvas("red"))["id"]))
    edit_of = {"render_id": base["id"], "image": 0}
    # Only the canvas and a new seed: size and steps come from the base.
    queued = client.post(
        "/v1/renders", json={"canvas": _canvas("blue"), "seed": 77, "edit_of": edit_of}
    )
    assert queued.status_code == 202, queued.text
    edit = queued.json()["edit"]
    assert edit["mode"] == "region"
    assert edit["changed_regions"] == [
        {"region": "local", "index": 0, "change": "modified",
         "fields": ["HTML_web_color_name"], "aspects": ["color"]}
    ]  # fmt: skip
    job = _done(client, str(queued.json()["id"]))
    before, after = _pixels(client, str(base["id"])), _pixels(client, str(job["id"]))
    rect = Canvas.model_validate(_canvas("blue")).local_descriptions[0].rect
    outside = repaint_mask([rect], SIZE, SIZE, cell_px=1) == 0
    assert np.abs(after - before)[outside].mean() <= 1.0
    assert np.abs(after - before)[~outside].mean() > 5.0
    mask = client.get(str(job["edit"]["mask_url"]))  # type: ignore[index]
    assert mask.status_code == 200
    assert Image.open(io.BytesIO(mask.content)).size == (SIZE, SIZE)
    with client.stream("GET", f"/v1/renders/{job['id']}/events") as events:
        data = [json.loads(line[5:]) for line in events.iter_lines() if line.startswith("data:")]
    first = next(event for event in data if "status" in event)
    assert first["status"] == "queued"
    assert first["edit"]["mode"] == "region"
    assert first["edit"]["mask_url"] == f"/v1/renders/{job['id']}/mask"


def test_changed_global_description_renders_in_full_and_says_why(
    client: TestClient, tiny_worker: WorkerThread
) -> None:
    base = _done(client, str(_render(client, canvas=_canvas())["id"]))
    job = _render(client, canvas=_canvas(description="a dog on a sofa"),
                  edit_of={"render_id": base["id"]})  # fmt: skip
    assert job["edit"]["mode"] == "full"  # type: ignore[index]
    assert "global description changed (description)" in job["edit"]["reason"]  # type: ignore[index]
    assert job["edit"]["mask_url"] is None  # type: ignore[index]
    # A full render repaints everything: its mask picture is the whole sketch tinted.
    assert client.get(f"/v1/renders/{job['id']}/mask").status_code == 200
    _done(client, str(job["id"]))


def test_changed_size_renders_in_full(client: TestClient, tiny_worker: WorkerThread) -> None:
    base = _done(client, str(_render(client, canvas=_canvas())["id"]))
    job = _render(client, canvas=_canvas("blue"), width=64, edit_of={"render_id": base["id"]})
    assert job["edit"]["mode"] == "full"  # type: ignore[index]
    assert job["edit"]["reason"] == f"the size changed from {SIZE}x{SIZE} to 64x{SIZE}"  # type: ignore[index]


def test_edit_of_an_unknown_or_unfinished_render_is_refused(client: TestClient) -> None:
    missing = client.post(
        "/v1/renders", json={"canvas": _canvas(), "edit_of": {"render_id": "0" * 32}}
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "id"
    queued = _render(client, canvas=_canvas())
    early = client.post(
        "/v1/renders", json={"canvas": _canvas(), "edit_of": {"render_id": queued["id"]}}
    )
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "edit_base_not_ready"
    bad = client.post("/v1/renders", json={"canvas": _canvas(), "edit_of": {"render_id": "../x"}})
    assert bad.status_code == 400


def _data_url(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    mime = "png" if fmt == "PNG" else "jpeg"
    return f"data:image/{mime};base64," + base64.b64encode(buffer.getvalue()).decode()


def _gradient(size: int = SIZE) -> Image.Image:
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(ramp, (size, 1))] * 3, axis=-1), mode="RGB")


def test_init_image_with_regions_only_keeps_the_image_outside_the_boxes(
    client: TestClient, tiny_worker: WorkerThread
) -> None:
    image = _gradient()
    init = {"image": _data_url(image, "JPEG"), "strength": 0.8, "regions_only": True}
    job = _done(client, str(_render(client, canvas=_canvas(), init_image=init)["id"]))
    after = _pixels(client, str(job["id"]))
    rect = Canvas.model_validate(_canvas()).local_descriptions[0].rect
    outside = repaint_mask([rect], SIZE, SIZE, cell_px=1) == 0
    # The stored image is the server's re-encoding of the JPEG, so compare with a tolerance.
    assert np.abs(after - np.asarray(image, dtype=np.float64))[outside].mean() < 3.0


def test_init_image_with_a_mask_repaints_only_the_white_part(
    client: TestClient, tiny_worker: WorkerThread
) -> None:
    image = _gradient()
    white = np.zeros((SIZE, SIZE), dtype=np.uint8)
    white[:, : SIZE // 2] = 255
    mask = Image.fromarray(white, mode="L")
    init = {"image": _data_url(image), "strength": 0.9, "mask": _data_url(mask)}
    job = _done(client, str(_render(client, canvas=_canvas(), init_image=init)["id"]))
    after = _pixels(client, str(job["id"]))
    kept = np.abs(after - np.asarray(image, dtype=np.float64))
    assert kept[:, SIZE // 2 + 8 :].mean() <= 1.0
    assert kept[:, : SIZE // 2 - 8].mean() > 5.0


def test_init_image_img2img_renders(client: TestClient, tiny_worker: WorkerThread) -> None:
    init = {"image": _data_url(_gradient(64)), "strength": 0.5}
    job = _done(client, str(_render(client, canvas=_canvas(), init_image=init)["id"]))
    # The 64 px init image is drawn at the render's size.
    assert _pixels(client, str(job["id"])).shape == (SIZE, SIZE, 3)


def _refused(client: TestClient, init: dict[str, object]) -> str:
    response = client.post("/v1/renders", json={"canvas": _canvas(), "width": SIZE,
                                               "height": SIZE, "init_image": init})  # fmt: skip
    assert response.status_code == 400, response.text
    return str(response.json()["error"]["message"])


def test_bad_init_images_answer_400_with_a_clear_message(client: TestClient) -> None:
    png = _data_url(_gradient(16))
    corrupt = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"x" * 64).decode()
    assert "cannot be decoded" in _refused(client, {"image": corrupt})
    assert "data URL" in _refused(client, {"image": "https://example.com/cat.png"})
    assert "base64" in _refused(client, {"image": "data:image/png;base64,@@@"})
    cmyk = _data_url(Image.new("CMYK", (16, 16)), "JPEG")
    assert "colour mode is CMYK" in _refused(client, {"image": cmyk})
    deep = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), dtype=np.uint16)).save(deep, format="PNG")
    deep_url = "data:image/png;base64," + base64.b64encode(deep.getvalue()).decode()
    assert "colour mode is I" in _refused(client, {"image": deep_url})
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, format="GIF")
    gif_url = "data:image/png;base64," + base64.b64encode(gif.getvalue()).decode()
    assert "send PNG or JPEG" in _refused(client, {"image": gif_url})
    huge = io.BytesIO()
    Image.new("1", (4096, 2048)).save(huge, format="PNG")  # tiny file, many pixels
    huge_url = "data:image/png;base64," + base64.b64encode(huge.getvalue()).decode()
    assert "the limit is 4194304" in _refused(client, {"image": huge_url})
    assert "not both" in _refused(client, {"image": png, "mask": png, "regions_only": True})


def test_an_init_image_over_the_byte_limit_answers_400(client: TestClient) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    url = _data_url(Image.fromarray(noise, mode="RGB"))  # about 1.47 MB of PNG
    # The data URL's length bound (the base64 of 1,400,000 bytes) refuses it before decoding.
    assert "init_image.image: String should have at most 1866732" in _refused(
        client, {"image": url}
    )


def test_only_the_key_that_made_a_render_can_edit_it(
    redis_url: str, tmp_path: Path, start_worker: Callable[..., WorkerThread]
) -> None:
    alice, bob = "alice-key-0123456789", "bob-key-0123456789ab"
    settings = make_settings(redis_url, tmp_path / "results", api_keys=f"alice={alice},bob={bob}")
    start_worker(build_tiny_renderer(), settings_=settings)
    as_alice = {"authorization": f"Bearer {alice}"}
    with TestClient(create_app(settings)) as keyed:
        small = {"canvas": _canvas(), "width": 64, "height": 64, "steps": 2}
        made = keyed.post("/v1/renders", headers=as_alice, json=small)
        assert made.status_code == 202, made.text
        base_id = made.json()["id"]
        wait_for(lambda: keyed.get(f"/v1/renders/{base_id}", headers=as_alice).json()["status"]
                 == "succeeded", timeout=120)  # fmt: skip
        edit = {"canvas": _canvas("blue"), "edit_of": {"render_id": base_id}}
        other = keyed.post("/v1/renders", json=edit, headers={"authorization": f"Bearer {bob}"})
        assert other.status_code == 404  # another key's render answers as if it did not exist
        own = keyed.post("/v1/renders", json=edit, headers=as_alice)
        assert own.status_code == 202
        assert own.json()["edit"]["mode"] == "region"
