"""EBNF grammar for Omost code, for constrained decoding (not yet implemented)."""


def canvas_grammar() -> str:
    """Return the grammar (not yet implemented)."""
    raise NotImplementedError
