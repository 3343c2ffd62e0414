"""Load ``docker-compose.yml`` the way ``docker compose`` does: YAML, then interpolation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# $$ (a literal $), ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, $NAME.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, environment: Mapping[str, str]) -> str:
    """Substitute compose variables in ``text`` from ``environment``."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        value = environment.get(name)
        op = match["op"] or ""
        if op.startswith(":") and not value:
            value = None
        if value is not None:
            return value
        if op.endswith("?"):
            raise ValueError(f"required variable {name} is not set: {match['arg']}")
        return match["arg"] or "" if op else ""

    return _VARIABLE.sub(substitute, text)


def _walk(node: Any, environment: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _walk(value, environment) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(value, environment) for value in node]
    if isinstance(node, str):
        return interpolate(node, environment)
    return node


def load_compose(path: Path, environment: Mapping[str, str]) -> dict[str, Any]:
    """Return the compose file at ``path`` with its variables taken from ``environment``."""
    raw = yaml.safe_load(path.read_text())
    loaded: dict[str, Any] = _walk(raw, environment)
    return loaded


def variables(path: Path) -> set[str]:
    """Return the names of the variables the compose file at ``path`` interpolates."""
    return {
        m["braced"] or m["bare"] for m in _VARIABLE.finditer(path.read_text()) if not m["escaped"]
    }
