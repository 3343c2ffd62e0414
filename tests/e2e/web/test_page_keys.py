"""The page against a renderer API that requires an API key: it asks, says when a key is wrong,
keeps the right one for the tab, and renders with it."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import Page
from web_stack import API_KEY, Stack

pytestmark = pytest.mark.e2e


def wait_for_a_served_model(url: str) -> None:
    """Wait until the worker has loaded its model and says so (jobs are routed to it)."""
    deadline = time.monotonic() + 180
    headers = {"authorization": f"Bearer {API_KEY}"}
    while httpx.get(f"{url}/v1/models", headers=headers).json()["data"] == []:
        assert time.monotonic() < deadline, "no worker serves a model"
        time.sleep(0.5)


def enter_key(page: Page, key: str) -> None:
    page.fill("#key-input", key)
    page.click("#key-submit")


def test_the_page_asks_for_a_key_refuses_a_wrong_one_and_renders_with_the_right_one(
    stack: Stack, page: Page
) -> None:
    page.goto(stack.keyed)
    page.wait_for_selector("#key-dialog[open]")
    assert "requires an API key" in page.inner_text("#key-message")
    enter_key(page, "not-the-key-0123456789")
    page.wait_for_function(
        "document.querySelector('#key-message').textContent.includes('not accepted')"
    )
    assert page.is_visible("#key-dialog")
    enter_key(page, API_KEY)
    page.wait_for_selector("body[data-ready=true]")
    assert not page.is_visible("#key-dialog")
    assert page.evaluate("sessionStorage.getItem('omost.apiKey')") == API_KEY
    # Chat (through /llm), the canvas check and the render all go with the key.
    page.fill("#prompt", "a fierce battle of warriors and a dragon")
    page.click("#send")
    page.wait_for_selector("body[data-chat=idle][data-canvas=valid]")
    page.fill("#render-form [name=width]", "64")
    page.fill("#render-form [name=height]", "64")
    page.fill("#render-form [name=steps]", "2")
    page.fill("#render-form [name=num_images]", "1")
    wait_for_a_served_model(stack.keyed)
    page.click("#render")
    page.wait_for_selector("#gallery li img", timeout=180_000)
    assert page.inner_text("#job-status") == "done"
    # The image came with the key (an <img> cannot send one): shown from a blob URL.
    page.wait_for_function(
        "[...document.querySelectorAll('#gallery img')]"
        ".every(i => i.complete && i.naturalWidth === 64 && i.src.startsWith('blob:'))"
    )
    # The key is kept for the tab: a reload does not ask again.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert not page.is_visible("#key-dialog")
