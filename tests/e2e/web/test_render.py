"""Rendering from the page: parameters, progress with previews, cancel, gallery, queue full."""

from __future__ import annotations

import pytest
from conftest import Stack, open_page

pytestmark = pytest.mark.e2e


def compose(page: object) -> None:
    page.fill("#prompt", "a fierce battle of warriors and a dragon")  # type: ignore[attr-defined]
    page.click("#send")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-chat=idle][data-canvas=valid]")  # type: ignore[attr-defined]


def set_params(page: object, **params: str) -> None:
    for name, value in params.items():
        page.fill(f"#render-form [name={name}]", value)  # type: ignore[attr-defined]


def test_render_shows_progress_and_the_image_with_its_seed(stack: Stack, page: object) -> None:
    open_page(page, stack.fake)
    assert page.is_disabled("#render")  # type: ignore[attr-defined]  # no canvas yet
    compose(page)
    set_params(page, width="128", height="64", steps="3", seed="4242", num_images="2")
    page.click("#render")  # type: ignore[attr-defined]
    page.wait_for_selector("#gallery li img", timeout=180_000)  # type: ignore[attr-defined]
    assert page.inner_text("#job-status") == "done"  # type: ignore[attr-defined]
    assert page.eval_on_selector("#progress", "p => p.value === p.max && p.max === 3")  # type: ignore[attr-defined]
    # Step previews arrived as the render went (the worker sends one every step here).
    assert page.eval_on_selector("#step-preview", "i => !i.hidden && i.src.startsWith('data:image/')")  # type: ignore[attr-defined]
    shots = page.locator("#gallery li")  # type: ignore[attr-defined]
    assert shots.count() == 2
    captions = shots.all_inner_texts()
    assert any("seed 4242" in c for c in captions) and any("seed 4243" in c for c in captions)
    assert all("128×64, 3 steps" in c for c in captions)
    page.wait_for_function(  # type: ignore[attr-defined]
        "[...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    size = page.eval_on_selector("#gallery img", "i => [i.naturalWidth, i.naturalHeight]")  # type: ignore[attr-defined]
    assert size == [128, 64]
    download = page.eval_on_selector("#gallery a[download]", "a => [a.href, a.download]")  # type: ignore[attr-defined]
    assert "/v1/renders/" in download[0] and download[1].endswith(".png")
    page.click("#gallery img")  # type: ignore[attr-defined]
    assert "seed" in page.inner_text("#viewer-caption")  # type: ignore[attr-defined]


def test_hires_fix_and_sketch_start_reach_the_api(stack: Stack, page: object) -> None:
    open_page(page, stack.fake)
    compose(page)
    set_params(page, width="128", height="64", steps="2")
    page.check("#hires")  # type: ignore[attr-defined]
    set_params(page, hires_scale="1.5", hires_steps="2", hires_denoise="0.5")
    page.check("#from-sketch")  # type: ignore[attr-defined]
    with page.expect_request("**/v1/renders") as sent:  # type: ignore[attr-defined]
        page.click("#render")  # type: ignore[attr-defined]
    body = sent.value.post_data_json
    assert body["hires_scale"] == 1.5 and body["hires_steps"] == 2 and body["hires_denoise"] == 0.5
    assert body["sketch_strength"] == 0.97
    assert body["canvas"]["local_descriptions"][0]["description"] == "A mighty dragon."
    page.wait_for_selector("#gallery li img", timeout=180_000)  # type: ignore[attr-defined]
    page.wait_for_function("document.querySelector('#gallery img').naturalWidth > 0")  # type: ignore[attr-defined]
    size = page.eval_on_selector("#gallery img", "i => [i.naturalWidth, i.naturalHeight]")  # type: ignore[attr-defined]
    assert size == [192, 64]  # the renderer scales by 1.5 and rounds down to multiples of 64


def test_cancel_stops_a_render(stack: Stack, page: object) -> None:
    # The broken API's queue has no worker: the job waits, so cancel always finds it queued.
    open_page(page, stack.broken)
    page.click("[data-tab=code]")  # type: ignore[attr-defined]
    from fake_llm import BATTLE

    page.fill("#code", BATTLE.to_code())  # type: ignore[attr-defined]
    page.click("#apply-code")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-canvas=valid]")  # type: ignore[attr-defined]
    set_params(page, width="64", height="64", steps="2")
    page.click("#render")  # type: ignore[attr-defined]
    page.wait_for_function("document.getElementById('job-status').textContent.startsWith('queued')")  # type: ignore[attr-defined]
    page.click("#cancel")  # type: ignore[attr-defined]
    page.wait_for_function("document.getElementById('job-status').textContent === 'canceled'")  # type: ignore[attr-defined]
    assert page.locator("#gallery li").count() == 0  # type: ignore[attr-defined]
    assert not page.is_disabled("#render")  # type: ignore[attr-defined]


def test_queue_full_is_a_clear_message(stack: Stack, page: object) -> None:
    open_page(page, stack.broken)
    page.click("[data-tab=code]")  # type: ignore[attr-defined]
    from fake_llm import BATTLE

    page.fill("#code", BATTLE.to_code())  # type: ignore[attr-defined]
    page.click("#apply-code")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-canvas=valid]")  # type: ignore[attr-defined]
    set_params(page, width="64", height="64", steps="2")
    page.click("#render")  # type: ignore[attr-defined]  # fills the backlog of one
    page.wait_for_function("document.getElementById('job-status').textContent.startsWith('queued')")  # type: ignore[attr-defined]
    page.evaluate("document.getElementById('render').disabled = false")  # type: ignore[attr-defined]
    page.click("#render")  # type: ignore[attr-defined]
    page.wait_for_selector("#banner:not([hidden])")  # type: ignore[attr-defined]
    assert "The render queue is full" in page.inner_text("#banner")  # type: ignore[attr-defined]
    # Free the backlog again for the other tests.
    page.click("#cancel")  # type: ignore[attr-defined]
    page.wait_for_function("document.getElementById('job-status').textContent === 'canceled'")  # type: ignore[attr-defined]
