"""Fixtures for the renderer pipeline tests: one CPU thread, tiny random SDXL, a dragon canvas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from omost_renderer.pipelines.sdxl.pipeline_sdxl import OmostSDXLPipeline
from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer
from omost_schema import Canvas, GlobalDescription, LocalDescription


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Other test suites share the machine's two cores.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_renderer() -> OmostSDXLPipeline:
    return build_tiny_renderer()


@pytest.fixture
def global_canvas() -> Canvas:
    """A canvas of its global region only (the FLUX families' stock-processor references)."""
    return Canvas(
        global_description=GlobalDescription(
            description="A quiet lake at dawn.",
            detailed_descriptions=["Mist over the water."],
            tags="lake, dawn, mist",
            HTML_web_color_name="lightblue",
        )
    )


@pytest.fixture
def dragon_canvas() -> Canvas:
    return Canvas(
        global_description=GlobalDescription(
            description="A majestic red dragon flying over a medieval castle at sunset.",
            detailed_descriptions=[
                "The dragon's scales shimmer in crimson and gold.",
                "The castle sits on a rocky cliff above a misty valley.",
                "The sky glows orange and purple as the sun sets.",
            ],
            tags="dragon, castle, sunset, fantasy, epic, flying, medieval",
            HTML_web_color_name="darkslateblue",
        ),
        local_descriptions=[
            LocalDescription(
                location="on the right",
                offset="no offset",
                area="a small square area",
                distance_to_viewer=6.0,
                description="A medieval castle on a cliff.",
                detailed_descriptions=["Stone towers with pointed roofs and banners."],
                tags="castle, towers, cliff",
                atmosphere="Ancient and mysterious.",
                style="Detailed fantasy painting.",
                quality_meta="High detail.",
                HTML_web_color_name="gray",
            ),
            LocalDescription(
                location="on the left",
                offset="slightly to the upper",
                area="a large vertical area",
                distance_to_viewer=2.0,
                description="A red dragon with spread wings.",
                detailed_descriptions=[
                    "Its wings are wide and leathery, catching the sunset light.",
                    "Smoke curls from its nostrils.",
                ],
                tags="dragon, wings, red, scales",
                atmosphere="Powerful and menacing.",
                style="Detailed fantasy painting.",
                quality_meta="High detail, sharp focus.",
                HTML_web_color_name="crimson",
            ),
        ],
    )
