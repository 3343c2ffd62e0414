"""The whole path with the real services on CPU: type a prompt, see the preview, render, see it.

The LLM is the real `omost-llm serve` with the tiny random transformers model: its words are
gibberish but its canvas is valid, so the test asserts on structure, not on content.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page
from web_stack import ARTIFACTS, Stack, open_page

pytestmark = pytest.mark.e2e


def test_prompt_preview_render_image_with_the_real_services(stack: Stack, page: Page) -> None:
    if not stack.real_llm_ready():
        log = (stack.logs / "llm.log").read_text(errors="replace")[-2000:]
        pytest.fail(f"the real LLM service did not become ready:\n{log}")
    open_page(page, stack.real)
    page.wait_for_selector("#llm-status[data-state=up]")
    page.wait_for_selector("#renderer-status[data-state=up]")
    page.fill("#llm-seed", "7")
    page.fill("#prompt", "a lighthouse on a cliff at dusk")
    page.click("#send")
    page.wait_for_selector("body[data-chat=idle]", timeout=240_000)
    assert page.locator("#messages .assistant.error").count() == 0, page.inner_text("#messages")
    page.wait_for_selector("body[data-canvas=valid]")
    assert page.inner_text("#legend li[data-region=global]").startswith("global:")
    assert "canvas.set_global_description(" in page.input_value("#code")
    # The preview shows the global colour somewhere: it is not the empty dark canvas.
    painted = page.evaluate(
        """() => {
          const c = document.getElementById('preview');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let lit = 0;
          for (let i = 0; i < d.length; i += 4) if (d[i + 3] === 255) lit += 1;
          return lit / (d.length / 4);
        }"""
    )
    assert painted > 0.99
    page.screenshot(path=str(ARTIFACTS / "real_canvas.png"))
    for name, value in {"width": "128", "height": "128", "steps": "3", "seed": "99"}.items():
        page.fill(f"#render-form [name={name}]", value)
    page.click("#render")
    page.wait_for_selector("#gallery li img", timeout=240_000)
    page.wait_for_function("document.querySelector('#gallery img').naturalWidth === 128")
    assert "seed 99" in page.inner_text("#gallery li")
    page.screenshot(path=str(ARTIFACTS / "real_rendered.png"))
