"""Fixtures of the schema tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from omost_schema import Canvas

DATA = Path(__file__).parent / "data"


@pytest.fixture
def dragon_code() -> str:
    """The seed's transcript answer: the fierce battle of warriors and the dragon."""
    return (DATA / "dragon_answer.txt").read_text(encoding="utf-8")


@pytest.fixture
def dragon(dragon_code: str) -> Canvas:
    """The transcript's canvas, parsed strictly."""
    return Canvas.from_code(dragon_code, strict=True)
