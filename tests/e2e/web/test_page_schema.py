"""The page's own drawing and reading of canvases agree exactly with omost_schema."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omost_schema import AREAS, COLOR_NAMES, LOCATIONS, OFFSETS, Canvas, pixel_rect
from playwright.sync_api import Page
from web_fake_llm import BATTLE
from web_stack import Stack, open_page

pytestmark = pytest.mark.e2e

SKETCH_JS = """async (canvas) => {
  const { sketchPixels } = await import('/static/sketch.js');
  const { toView } = await import('/static/diff.js');
  const vocab = await (await fetch('/v1/schema/vocabulary')).json();
  return Array.from(sketchPixels(vocab, toView(canvas)));
}"""


def _local(location: str, offset: str, area: str, distance: float, color: str) -> dict[str, object]:
    local = BATTLE.local_descriptions[0].model_dump()
    local.update(location=location, offset=offset, area=area, distance_to_viewer=distance)
    local["HTML_web_color_name"] = color
    return local


locals_strategy = st.lists(
    st.builds(
        _local,
        st.sampled_from(LOCATIONS),
        st.sampled_from(OFFSETS),
        st.sampled_from(AREAS),
        st.sampled_from([1.0, 2.0, 2.0, 5.5, 9.0]),  # repeats: ties keep program order
        st.sampled_from(COLOR_NAMES),
    ),
    max_size=6,
)


def test_sketch_in_the_browser_matches_the_schema_byte_for_byte(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(locals_strategy, st.sampled_from(COLOR_NAMES))
    def check(local_list: list[dict[str, object]], background: str) -> None:
        data = BATTLE.model_dump()
        data["global_description"]["HTML_web_color_name"] = background
        data["local_descriptions"] = local_list
        canvas = Canvas.model_validate(data)
        expected = canvas.process().initial_image.reshape(-1).tolist()
        assert page.evaluate(SKETCH_JS, canvas.model_dump()) == expected

    check()


def test_sketch_in_the_browser_blends_like_omost(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    data = BATTLE.model_dump()
    data["global_description"]["HTML_web_color_name"] = "blueviolet"
    data["local_descriptions"] = [
        _local("in the center", "no offset", "a small square area", 1.0, "darkkhaki")
    ]
    pixels = page.evaluate(SKETCH_JS, Canvas.model_validate(data).model_dump())
    # Omost's numpy arithmetic gives 141 for green, where all-float32 arithmetic gives 140.
    assert pixels[(45 * 90 + 45) * 3 : (45 * 90 + 45) * 3 + 3] == [173, 141, 142]


def test_pixel_boxes_in_the_browser_match_the_schema(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    got = page.evaluate(
        """async () => {
          const { pixelRect } = await import('/static/sketch.js');
          const vocab = await (await fetch('/v1/schema/vocabulary')).json();
          const RECTS = [[0, 90, 0, 90], [15, 75, 5, 45], [20, 70, 35, 85], [45, 90, 40, 50]];
          const out = [];
          for (const size of [[896, 1152], [100, 30], [513, 77]]) {
            for (const rect of RECTS) {
              out.push(pixelRect(vocab, rect, size[0], size[1]));
            }
          }
          return out;
        }"""
    )
    expected = []
    for width, height in [(896, 1152), (100, 30), (513, 77)]:
        for rect in [(0, 90, 0, 90), (15, 75, 5, 45), (20, 70, 35, 85), (45, 90, 40, 50)]:
            from omost_schema import Rect

            expected.append(list(pixel_rect(Rect(*rect), width, height)))
    assert got == expected


SCAN_JS = """async (text) => {
  const { scanCanvas } = await import('/static/scanner.js');
  return scanCanvas(text);
}"""


def test_scanner_reads_a_whole_answer_as_the_schema_does(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    answer = f"Sure.\n\n```python\n{BATTLE.to_code()}```\nDone."
    scan = page.evaluate(SCAN_JS, answer)
    assert scan["complete"] is True
    glob = {k: v for k, v in scan["global"].items() if k not in ("complete", "partialFields")}
    assert glob == BATTLE.global_description.model_dump()
    locals_ = [
        {k: v for k, v in local.items() if k not in ("complete", "partialFields")}
        for local in scan["locals"]
    ]
    assert locals_ == [local.model_dump() for local in BATTLE.local_descriptions]


def test_scanner_keeps_what_a_cut_off_call_already_holds(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    code = BATTLE.to_code()
    cut = code.index("description='A group of fierce")
    scan = page.evaluate(SCAN_JS, code[: cut + len("description='A group of fi")])
    assert scan["complete"] is False
    assert len(scan["locals"]) == 2
    last = scan["locals"][1]
    assert last["complete"] is False
    assert last["area"] == "a medium-sized vertical area"
    assert last["description"] == "A group of fi"
    assert "description" in last["partialFields"]
    assert "HTML_web_color_name" not in last


def test_scanner_reads_unescaped_inner_quotes_as_omost_meant(stack: Stack, page: Page) -> None:
    open_page(page, stack.fake)
    code = (
        "canvas = Canvas()\ncanvas.set_global_description(description='A sign with the 'O' "
        "letter.', detailed_descriptions=['It's big.'], tags='sign', HTML_web_color_name='red')\n"
    )
    scan = page.evaluate(SCAN_JS, code)
    assert scan["global"]["description"] == "A sign with the 'O' letter."
    assert scan["global"]["detailed_descriptions"] == ["It's big."]
    assert scan["global"]["HTML_web_color_name"] == "red"
