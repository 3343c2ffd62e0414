"""The whole path with the real services on CPU: type a prompt, see the preview, render, see it.

The LLM is the real `omost-llm serve` with the tiny random transformers model: its words are
gibberish but its canvas is valid, so the test asserts on structure, not on content.
"""

from __future__ import annotations

import pytest
from conftest import ARTIFACTS, Stack, open_page

pytestmark = pytest.mark.e2e


def test_prompt_preview_render_image_with_the_real_services(stack: Stack, page: object) -> None:
    if not stack.real_llm_ready():
        log = (stack.logs / "llm.log").read_text(errors="replace")[-2000:]
        pytest.fail(f"the real LLM service did not become ready:\n{log}")
    open_page(page, stack.real)
    page.wait_for_selector("#llm-status[data-state=up]")  # type: ignore[attr-defined]
    page.wait_for_selector("#renderer-status[data-state=up]")  # type: ignore[attr-defined]
    page.fill("#llm-seed", "7")  # type: ignore[attr-defined]
    page.fill("#prompt", "a lighthouse on a cliff at dusk")  # type: ignore[attr-defined]
    page.click("#send")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-chat=idle]", timeout=240_000)  # type: ignore[attr-defined]
    assert page.locator("#messages .assistant.error").count() == 0, page.inner_text("#messages")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-canvas=valid]")  # type: ignore[attr-defined]
    assert page.inner_text("#legend li[data-region=global]").startswith("global:")  # type: ignore[attr-defined]
    assert "canvas.set_global_description(" in page.input_value("#code")  # type: ignore[attr-defined]
    # The preview shows the global colour somewhere: it is not the empty dark canvas.
    painted = page.evaluate(  # type: ignore[attr-defined]
        """() => {
          const c = document.getElementById('preview');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let lit = 0;
          for (let i = 0; i < d.length; i += 4) if (d[i + 3] === 255) lit += 1;
          return lit / (d.length / 4);
        }"""
    )
    assert painted > 0.99
    page.screenshot(path=str(ARTIFACTS / "real_canvas.png"))  # type: ignore[attr-defined]
    for name, value in {"width": "128", "height": "128", "steps": "3", "seed": "99"}.items():
        page.fill(f"#render-form [name={name}]", value)  # type: ignore[attr-defined]
    page.click("#render")  # type: ignore[attr-defined]
    page.wait_for_selector("#gallery li img", timeout=240_000)  # type: ignore[attr-defined]
    page.wait_for_function("document.querySelector('#gallery img').naturalWidth === 128")  # type: ignore[attr-defined]
    assert "seed 99" in page.inner_text("#gallery li")  # type: ignore[attr-defined]
    page.screenshot(path=str(ARTIFACTS / "real_rendered.png"))  # type: ignore[attr-defined]
