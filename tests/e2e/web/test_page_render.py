"""Rendering from the page: parameters, progress with previews, cancel, gallery, queue full."""

from __future__ import annotations

import httpx
import pytest
from omost_schema.geometry import Rect
from omost_schema.repaint import repaint_mask
from playwright.sync_api import Page
from web_fake_llm import BATTLE, DRAGON
from web_stack import Stack, open_page

pytestmark = pytest.mark.e2e


def compose(page: Page) -> None:
    page.fill("#prompt", "a fierce battle of warriors and a dragon")
    page.click("#send")
    page.wait_for_selector("body[data-chat=idle][data-canvas=valid]")


def set_params(page: Page, **params: str) -> None:
    for name, value in params.items():
        page.fill(f"#render-form [name={name}]", value)


def test_render_shows_progress_and_the_image_with_its_seed(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    assert page.is_disabled("#render")  # no canvas yet
    compose(page)
    set_params(page, width="128", height="64", steps="3", seed="4242", num_images="2")
    page.click("#render")
    page.wait_for_selector("#gallery li img", timeout=180_000)
    assert page.inner_text("#job-status") == "done"
    assert page.eval_on_selector("#progress", "p => p.value === p.max && p.max === 3")
    # Step previews arrived as the render went (the worker sends one every step here).
    assert page.eval_on_selector(
        "#step-preview", "i => !i.hidden && i.src.startsWith('data:image/')"
    )
    shots = page.locator("#gallery li")
    assert shots.count() == 2
    captions = shots.all_inner_texts()
    assert any("seed 4242" in c for c in captions)
    assert any("seed 4243" in c for c in captions)
    assert all("128\u00d764, 3 steps" in c for c in captions)
    page.wait_for_function(
        "[...document.querySelectorAll('#gallery img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    size = page.eval_on_selector("#gallery img", "i => [i.naturalWidth, i.naturalHeight]")
    assert size == [128, 64]
    download = page.eval_on_selector("#gallery a[download]", "a => [a.href, a.download]")
    assert "/v1/renders/" in download[0]
    assert download[1].endswith(".png")
    page.click("#gallery img")
    assert "seed" in page.inner_text("#viewer-caption")


def test_hires_fix_and_sketch_start_reach_the_api(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    compose(page)
    set_params(page, width="128", height="64", steps="2")
    page.check("#hires")
    set_params(page, hires_scale="1.5", hires_steps="2", hires_denoise="0.5")
    page.check("#from-sketch")
    with page.expect_request("**/v1/renders") as sent:
        page.click("#render")
    body = sent.value.post_data_json
    assert body["hires_scale"] == 1.5
    assert body["hires_steps"] == 2
    assert body["hires_denoise"] == 0.5
    assert body["sketch_strength"] == 0.97
    assert body["canvas"]["local_descriptions"][0]["description"] == "A mighty dragon."
    page.wait_for_selector("#gallery li img", timeout=180_000)
    page.wait_for_function("document.querySelector('#gallery img').naturalWidth > 0")
    size = page.eval_on_selector("#gallery img", "i => [i.naturalWidth, i.naturalHeight]")
    # Omost's rule: each side times 1.5, rounded (Python's round) to a multiple of 64:
    # 128 -> 192, and 64 -> round(1.5) * 64 = 128.
    assert size == [192, 128]


def test_cancel_stops_a_render(stack: Stack, page: Page) -> None:
    # The broken API's queue has no worker: the job waits, so cancel always finds it queued.
    open_page(page, stack.broken)
    page.click("[data-tab=code]")
    page.fill("#code", BATTLE.to_code())
    page.click("#apply-code")
    page.wait_for_selector("body[data-canvas=valid]")
    set_params(page, width="64", height="64", steps="2")
    page.click("#render")
    page.wait_for_function("document.getElementById('job-status').textContent.startsWith('queued')")
    page.click("#cancel")
    page.wait_for_function("document.getElementById('job-status').textContent === 'canceled'")
    assert page.locator("#gallery li").count() == 0
    assert not page.is_disabled("#render")


def test_queue_full_is_a_clear_message(stack: Stack, page: Page) -> None:
    # The broken API's backlog is one job and no worker serves it: one job from outside fills it.
    body = {"canvas": BATTLE.model_dump(), "width": 64, "height": 64, "steps": 2}
    blocker = httpx.post(f"{stack.broken}/v1/renders", json=body, timeout=10).json()
    try:
        open_page(page, stack.broken)
        page.click("[data-tab=code]")
        page.fill("#code", BATTLE.to_code())
        page.click("#apply-code")
        page.wait_for_selector("body[data-canvas=valid]")
        set_params(page, width="64", height="64", steps="2")
        page.click("#render")
        page.wait_for_selector("#banner:not([hidden])")
        assert "The render queue is full. Try again in" in page.inner_text("#banner")
        assert page.inner_text("#job-status").startswith("failed: The render queue is full")
        assert not page.is_disabled("#render")
    finally:
        httpx.post(f"{stack.broken}/v1/renders/{blocker['id']}/cancel", timeout=10)


def test_after_an_edit_turn_render_the_changes_is_the_default(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    compose(page)
    set_params(page, width="128", height="64", steps="2", num_images="1")
    page.click("#render")
    page.wait_for_selector("#gallery li img", timeout=180_000)
    assert page.inner_text("#render") == "Render"
    assert page.is_hidden("#full-render")
    page.fill("#prompt", "make the dragon red")
    page.click("#send")
    page.wait_for_selector("body[data-chat=idle][data-canvas=valid]")
    assert page.inner_text("#render") == "Render the changes"
    assert page.is_visible("#full-render")  # a full re-render stays one click away
    # Before the click, the repaint area is tinted over the sketch: the server's mask (the
    # dragon's box, dilated and feathered) read at every latent cell of the overlay.
    assert page.is_visible("#repaint-area")
    assert "repaints the tinted area" in page.inner_text("#repaint-note")
    expected = repaint_mask([DRAGON.rect], 128, 64)
    shown = page.eval_on_selector(
        "#repaint-area",
        """(c, [rows, cols]) => {
          const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
          const out = [];
          for (let r = 0; r < rows; r += 1) for (let k = 0; k < cols; k += 1) {
            const x = Math.floor(((k + 0.5) * c.width) / cols);
            const y = Math.floor(((r + 0.5) * c.height) / rows);
            out.push(data[(y * c.width + x) * 4 + 3] / (0.55 * 255));
          }
          return out;
        }""",
        list(expected.shape),
    )
    assert shown == pytest.approx(expected.ravel().tolist(), abs=0.02)
    # A changed size makes it a full render, said in words, with no area; back, the area returns.
    set_params(page, width="64")
    page.wait_for_selector("#repaint-area", state="hidden")
    assert page.inner_text("#repaint-note") == (
        "Render the changes will be a full render: the size changed from 128x64 to 64x64."
    )
    set_params(page, width="128")
    page.wait_for_selector("#repaint-area", state="visible")
    with page.expect_request("**/v1/renders") as sent:
        page.click("#render")
    assert "render_id" in sent.value.post_data_json["edit_of"]
    page.wait_for_selector("#edit-mask:not([hidden])", timeout=60_000)
    assert "Rendering the changes: repaints region" not in page.inner_text("#edit-reason")
    assert page.inner_text("#edit-reason").startswith("Rendering the changes: repaints local 0")
    page.wait_for_function("document.querySelector('#edit-mask').naturalWidth === 128")
    page.wait_for_function("document.querySelectorAll('#gallery li').length === 2", timeout=180_000)
    with page.expect_request("**/v1/renders") as full:
        page.click("#full-render")
    assert "edit_of" not in full.value.post_data_json


def test_the_pages_repaint_area_is_the_servers_mask(stack: Stack, page: Page) -> None:
    # At a size where the margin and the feather leave cells kept and half-repainted, the page's
    # copy of the mask gives the server's values cell by cell.
    open_page(page, stack.fake)
    rects = [Rect(10, 40, 5, 30), Rect(60, 85, 50, 88)]
    shown = page.evaluate(
        """async ([rects, w, h]) => {
          const { repaintMask } = await import("/static/repaint.js");
          const vocab = await (await fetch("/v1/schema/vocabulary")).json();
          const mask = repaintMask(vocab, rects, w, h);
          return [mask.rows, mask.cols, Array.from(mask.values)];
        }""",
        [[list(r) for r in rects], 1000, 600],
    )
    expected = repaint_mask(rects, 1000, 600)
    assert 0.0 < expected.mean() < 1.0  # cells kept and cells repainted
    assert ((expected > 0) & (expected < 1)).any()  # and cells in the feather
    assert shown[:2] == list(expected.shape)
    assert shown[2] == pytest.approx(expected.ravel().tolist(), abs=1e-6)
