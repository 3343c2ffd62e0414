"""Chat with a streaming LLM, the live sketch, multi-turn changes and hand edits, in Chromium.

The LLM here is the fake one of ``fake_llm.py``: it streams a known canvas slowly, so the tests
can assert on exact regions, colours and changes.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page
from web_fake_llm import BATTLE
from web_stack import ARTIFACTS, Stack, open_page

pytestmark = pytest.mark.e2e


def send(page: Page, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.click("#send")


def wait_idle(page: Page) -> None:
    page.wait_for_selector("body[data-chat=idle]")


def legend_texts(page: Page) -> list[str]:
    return page.locator("#legend li").all_inner_texts()


def preview_pixel(page: Page, fx: float, fy: float) -> list[int]:
    """RGBA of the preview canvas at a fraction of its width and height."""
    return page.evaluate(
        """([fx, fy]) => {
          const c = document.getElementById('preview');
          const x = Math.floor(c.width * fx), y = Math.floor(c.height * fy);
          return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data);
        }""",
        [fx, fy],
    )


def test_chat_draws_the_canvas_live_while_it_streams(stack: Stack, page: Page) -> None:
    stack.fake_llm.delay_s = 0.08
    try:
        open_page(page, stack.fake)
        send(page, "a fierce battle of warriors and a dragon")
        # Mid-stream: the dragon's box is drawn and labelled before the answer is complete.
        page.wait_for_function(
            "document.getElementById('legend').innerText.includes('0: A mighty dragon')"
            " && document.body.dataset.chat === 'streaming'"
        )
        assert page.inner_text("#canvas-state") == "the model is writing the canvas…"
        page.screenshot(path=str(ARTIFACTS / "chat_mid_stream.png"))
        assert "writing" in page.inner_text("#messages .assistant")
        wait_idle(page)
    finally:
        stack.fake_llm.delay_s = 0.01
    texts = legend_texts(page)
    assert texts[0].startswith("global: A fierce battle")
    assert texts[1].startswith("0: A mighty dragon")
    assert texts[2].startswith("1: A group of fierce warriors")
    assert page.inner_text("#canvas-state") == "2 regions, valid"
    # The global colour (darkslategray) fills the top-right corner, outside every box.
    assert preview_pixel(page, 0.97, 0.02)[:3] == [47, 79, 79]
    # The conversation went out with the user's prompt, to the model the service lists.
    request = stack.fake_llm.requests[-1]
    assert request["model"] == "fake"
    assert request["stream"] is True
    assert "canvas.add_local_description(" in page.input_value("#code")


def test_an_edit_shows_what_changed_between_the_two_canvases(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    send(page, "a fierce battle of warriors and a dragon")
    wait_idle(page)
    dragon_green = preview_pixel(page, 0.8, 0.5)
    send(page, "make the dragon red")
    wait_idle(page)
    changes = page.inner_text("#changes")
    assert "region 0 modified: HTML_web_color_name" in changes
    assert "darkgreen → red" in changes
    assert "region 1" not in changes
    assert page.locator("#legend li[data-region='0'] .badge").inner_text() == "modified"
    dragon_red = preview_pixel(page, 0.8, 0.5)
    assert dragon_red != dragon_green
    assert dragon_red[0] > 150
    assert dragon_red[1] < 60
    # The second turn sent the whole history back, the first answer included.
    messages = stack.fake_llm.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert "canvas.add_local_description(" in messages[1]["content"]


def test_an_answer_says_when_older_turns_were_left_out(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    send(page, "a fierce battle of warriors and a dragon")
    wait_idle(page)
    assert "left out" not in page.inner_text("#messages")
    stack.fake_llm.left_out = 4
    try:
        send(page, "make the dragon red")
        wait_idle(page)
    finally:
        stack.fake_llm.left_out = 0
    last = page.locator("#messages li.message.assistant").last.inner_text()
    assert "older turns were left out to fit the model's context (4 messages)" in last


def test_hand_edit_revalidates_and_updates_code_and_preview(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    send(page, "a fierce battle of warriors and a dragon")
    wait_idle(page)
    page.click("#legend li[data-region='0']")
    page.select_option("#region-form [name=area]", "a small square area")
    page.wait_for_function(
        "document.getElementById('code').value.includes(\"area='a small square area'\")"
    )
    assert page.inner_text("#canvas-state") == "2 regions, valid"
    assert not page.is_disabled("#render")
    # An invalid value is refused with the schema's rule, next to the field, and blocks rendering.
    page.fill("#region-form [name=distance_to_viewer]", "-3")
    page.wait_for_selector("body[data-canvas=invalid]")
    error = page.inner_text("#region-form [data-field=distance_to_viewer] .field-error")
    assert "greater than 0" in error
    assert "local_descriptions.0.distance_to_viewer" in page.inner_text("#validation")
    assert page.is_disabled("#render")
    page.fill("#region-form [name=distance_to_viewer]", "4")
    page.wait_for_selector("body[data-canvas=valid]")
    assert "distance_to_viewer=4.0" in page.input_value("#code")
    # The next turn edits the hand-edited canvas: it replaced the model's answer in the history.
    send(page, "make the dragon red")
    wait_idle(page)
    sent = stack.fake_llm.requests[-1]["messages"][1]["content"]
    assert "distance_to_viewer=4.0" in sent
    assert "a small square area" in sent


def test_code_view_applies_code_and_reports_errors_with_their_line(
    stack: Stack, page: Page
) -> None:
    open_page(page, stack.fake)
    page.click("[data-tab=code]")
    page.fill("#code", BATTLE.to_code().replace("'darkgreen'", "'darkgren'"))
    page.click("#apply-code")
    page.wait_for_selector("body[data-canvas=valid]")
    assert "darkgren" in page.inner_text("#code-status")
    assert "HTML_web_color_name='darkgreen'" in page.input_value("#code")
    assert len(legend_texts(page)) == 3
    page.fill("#code", "canvas = Canvas()\ncanvas.set_global_description(description=1 +)\n")
    page.click("#apply-code")
    page.wait_for_selector("body[data-canvas=invalid]")
    assert "line 2" in page.inner_text("#validation")
    assert page.is_disabled("#render")


def test_llm_down_is_a_clear_message(stack: Stack, page: Page) -> None:
    open_page(page, stack.broken)
    page.wait_for_selector("#llm-status[data-state=down]")
    send(page, "a cat")
    page.wait_for_selector("#messages .assistant.error")
    banner = page.inner_text("#banner")
    assert "The LLM service is not available" in banner
    assert "omost-llm serve" in banner


def test_an_error_mid_stream_is_shown_and_the_canvas_kept(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    send(page, "a fierce battle of warriors and a dragon")
    wait_idle(page)
    stack.fake_llm.fail_after = 5
    try:
        send(page, "make the dragon red")
        page.wait_for_selector("#messages .assistant.error")
    finally:
        stack.fake_llm.fail_after = None
    assert "the model backend crashed" in page.inner_text("#banner")
    wait_idle(page)
    assert page.inner_text("#canvas-state") == "2 regions, valid"
    assert len(legend_texts(page)) == 3
