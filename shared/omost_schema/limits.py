"""Explicit size limits of a canvas, shared by validation, parsing, the JSON schema and grammar.

Real Omost answers stay far inside them (sub-prompts are under 75 CLIP tokens, about 300
characters; a canvas has a handful of locals); the limits exist to refuse absurd input early.
"""

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
