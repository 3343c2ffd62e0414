"""Explicit size limits of a canvas, shared by validation, parsing, the JSON schema and grammar.

Real Omost answers stay far inside them (sub-prompts are under 75 CLIP tokens, about 300
characters; a canvas has a handful of locals); the limits exist to refuse absurd input early.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Characters in ``description``, ``atmosphere``, ``style``, ``quality_meta`` and each detailed
#: description (a sub-prompt is under 75 tokens; 500 characters is well over that).
MAX_TEXT_CHARS = 500
#: Characters in ``tags`` (a comma-separated list, often longer than one sub-prompt).
MAX_TAGS_CHARS = 1000
#: Items in ``detailed_descriptions``.
MAX_DETAILED_DESCRIPTIONS = 16
#: Local descriptions in one canvas.
MAX_LOCAL_DESCRIPTIONS = 24
#: Largest ``distance_to_viewer`` (only the order matters; the bound keeps numbers finite).
MAX_DISTANCE_TO_VIEWER = 1.0e6
#: Characters of Omost code (or a whole model answer) accepted by the parser.
MAX_CODE_CHARS = 400_000
#: Bracket nesting accepted in Omost code (a canvas needs 2: a call holding a list). Checked before
#: Python's parser runs, which can exhaust its stack on deep nesting.
MAX_CODE_NESTING = 8
#: Characters of a vocabulary name accepted by lenient matching. difflib's ratio is
#: ``2 * matches / (len(value) + len(name))`` and at most ``len(name)`` characters match, so a value
#: over three times the longest valid name (30, "a medium-sized horizontal area") can never reach
#: Omost's cut-off of 0.5: refusing it changes no answer and bounds difflib's quadratic work.
MAX_NAME_CHARS = 90


@dataclass(frozen=True)
class CanvasBudget:
    """How large a canvas a model may write while decoding: enforced by the grammar and schema.

    The canvas limits above bound what the services accept; a budget bounds what a decoder is
    allowed to generate, so that a model that falls into repetition (small models do: they fill
    every string and list to its bound) is made to finish early. Every field is at most its
    canvas limit.

    Attributes:
        max_locals: Most local descriptions.
        max_detailed_descriptions: Most detailed descriptions per region (global and each local).
        max_chars: Most characters of each text (description, detailed description, atmosphere,
            style, quality_meta).
        max_tags_chars: Most characters of each ``tags`` string.
    """

    max_locals: int = MAX_LOCAL_DESCRIPTIONS
    max_detailed_descriptions: int = MAX_DETAILED_DESCRIPTIONS
    max_chars: int = MAX_TEXT_CHARS
    max_tags_chars: int = MAX_TAGS_CHARS

    def __post_init__(self) -> None:
        """Check every field against its canvas limit.

        Raises:
            ValueError: A field is below its minimum (1, or 0 for ``max_locals``) or above its
                limit.
        """
        bounds = {
            "max_locals": (0, MAX_LOCAL_DESCRIPTIONS),
            "max_detailed_descriptions": (1, MAX_DETAILED_DESCRIPTIONS),
            "max_chars": (1, MAX_TEXT_CHARS),
            "max_tags_chars": (1, MAX_TAGS_CHARS),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be within {low}..{high}, not {value}")

    def within(self, maximum: CanvasBudget) -> bool:
        """Whether no field of this budget exceeds the same field of ``maximum``."""
        return all(getattr(self, name) <= getattr(maximum, name) for name in BUDGET_FIELDS)


#: The field names of ``CanvasBudget``, in order.
BUDGET_FIELDS = ("max_locals", "max_detailed_descriptions", "max_chars", "max_tags_chars")
#: Omost's full budget: the canvas limits themselves (the Omost models write canvases far inside
#: them, so nothing they write is cut).
FULL_BUDGET = CanvasBudget()
#: A compact budget for small generic models (the CPU default SmolLM2-135M, the random `tiny`
#: model): a few regions with short texts, a few hundred tokens at most, so that a canvas comes
#: in about a minute on two CPU cores even when sampling sends the model into repetition.
COMPACT_BUDGET = CanvasBudget(
    max_locals=3, max_detailed_descriptions=1, max_chars=100, max_tags_chars=100
)
