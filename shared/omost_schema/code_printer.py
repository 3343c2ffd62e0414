"""Print a canvas as Omost code, in the layout the Omost models write and were trained on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omost_schema.conditions import clean_subprompt

if TYPE_CHECKING:
    from omost_schema.canvas import Canvas, GlobalDescription, LocalDescription

_INDENT = "    "


def _string(value: str) -> str:
    # Python's repr picks single quotes, or double quotes when the text holds a single quote,
    # exactly as the models write them, and escapes anything else; the parser reads it back.
    return repr(value)


def _argument_lines(fields: dict[str, object]) -> list[str]:
    lines: list[str] = []
    for name, value in fields.items():
        if isinstance(value, list) and not value:
            lines.append(f"{_INDENT}{name}=[],")
        elif isinstance(value, list):
            lines.append(f"{_INDENT}{name}=[")
            lines.extend(f"{_INDENT * 2}{_string(item)}," for item in value)
            lines.append(f"{_INDENT}],")
        elif isinstance(value, float):
            lines.append(f"{_INDENT}{name}={value!r},")
        else:
            lines.append(f"{_INDENT}{name}={_string(str(value))},")
    return lines


def _call(method: str, model: GlobalDescription | LocalDescription) -> list[str]:
    return [f"canvas.{method}(", *_argument_lines(model.model_dump()), ")"]


def _local_comment(local: LocalDescription) -> str:
    text = clean_subprompt(local.description)
    return f"# Add {text[:1].lower()}{text[1:]}"


def canvas_to_code(canvas: Canvas) -> str:
    """Return Omost code for ``canvas`` that the parser reads back to an equal canvas.

    Args:
        canvas: The canvas to print.

    Returns:
        The program: ``canvas = Canvas()``, the global call, then one call per local, with
        keyword arguments and comments as in Omost's transcripts, ending with a newline.
    """
    lines = ["# Initialize the canvas", "canvas = Canvas()", ""]
    lines += ["# Set a global description for the canvas"]
    lines += _call("set_global_description", canvas.global_description)
    for local in canvas.local_descriptions:
        lines += ["", _local_comment(local)]
        lines += _call("add_local_description", local)
    return "\n".join(lines) + "\n"
