"""Omost's system prompt, and the extra instruction for models that answer in JSON."""

from __future__ import annotations

import json

from omost_schema import AREAS, FULL_BUDGET, LOCATIONS, OFFSETS, CanvasBudget, canvas_json_schema

from omost_llm.config import OutputMode

_INTRO = "You are a helpful AI assistant to compose images using the below python class `Canvas`:"

_GLOBAL_SIGNATURE = (
    "def set_global_description(self, description: str, detailed_descriptions: list[str], "
    "tags: str, HTML_web_color_name: str):"
)
_LOCAL_SIGNATURE = (
    "def add_local_description(self, location: str, offset: str, area: str, "
    "distance_to_viewer: float, description: str, detailed_descriptions: list[str], tags: str, "
    "atmosphere: str, style: str, quality_meta: str, HTML_web_color_name: str):"
)


def _assert_in(name: str, values: tuple[str, ...] | list[str]) -> str:
    quoted = ", ".join(f'"{value}"' for value in values)
    return f"        assert {name} in [{quoted}]"


def omost_system_prompt() -> str:
    """The system prompt the Omost models were trained with.

    One sentence, then a python block with the ``Canvas`` class: both method signatures on one
    line each and the four assert lines of ``add_local_description``.
    """
    lines = [
        _INTRO,
        "",
        "```python",
        "class Canvas:",
        f"    {_GLOBAL_SIGNATURE}",
        "        pass",
        "",
        f"    {_LOCAL_SIGNATURE}",
        _assert_in("location", list(LOCATIONS)),
        _assert_in("offset", list(OFFSETS)),
        _assert_in("area", list(AREAS)),
        "        assert distance_to_viewer > 0",
        "        pass",
        "```",
    ]
    return "\n".join(lines)


def system_prompt(
    output: OutputMode, budget: CanvasBudget, client_prompt: str | None = None
) -> str:
    """The system prompt: the client's if it sent one, else Omost's; plus the JSON rules.

    Args:
        output: The output mode (``json`` appends ``json_instruction(budget)``).
        budget: The canvas budget the answer is decoded under.
        client_prompt: The client's system prompt, if any.
    """
    prompt = client_prompt or omost_system_prompt()
    return prompt + json_instruction(budget) if output is OutputMode.JSON else prompt


def json_instruction(budget: CanvasBudget = FULL_BUDGET) -> str:
    """Appended to the system prompt in ``json`` mode, for generic instruct models.

    The schema shown is the one of ``budget``, so the model is told the bounds it decodes under.
    """
    schema = json.dumps(canvas_json_schema(budget), separators=(",", ":"))
    return (
        "\n\nAnswer with one JSON object only: the canvas, with the same fields as the arguments "
        "of the two methods (`global_description` and the list `local_descriptions`), "
        f"following this JSON schema: {schema}"
    )
