"""The environment variables each service's pydantic-settings ``Settings`` class reads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices, SecretStr
from pydantic_settings import BaseSettings

_ENV_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


@dataclass(frozen=True)
class EnvSetting:
    """One setting as the environment sees it."""

    name: str
    secret: bool


def _mentions_secret(annotation: object) -> bool:
    if annotation is SecretStr:
        return True
    return any(_mentions_secret(arg) for arg in getattr(annotation, "__args__", ()))


def env_settings(settings_class: type[BaseSettings]) -> list[EnvSetting]:
    """List the environment variable of every field of ``settings_class``.

    The name is the field's first validation alias when it has one (pydantic-settings then ignores
    the prefix), else the env prefix plus the field name, upper-cased.
    """
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    found = []
    for field_name, info in settings_class.model_fields.items():
        alias = info.validation_alias or info.alias
        if isinstance(alias, AliasChoices):
            alias = next(choice for choice in alias.choices if isinstance(choice, str))
        name = alias if isinstance(alias, str) else f"{prefix}{field_name}"
        found.append(EnvSetting(name.upper(), _mentions_secret(info.annotation)))
    return found


def read_documented_env(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Parse an env-style file into (set values, commented-out documented defaults).

    A documented line is ``NAME=value`` or ``# NAME=value``, and the line above it must be a
    comment saying what it is.
    """
    values: dict[str, str] = {}
    defaults: dict[str, str] = {}
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        match = _ENV_LINE.match(line.strip())
        if match is None:
            continue
        above = lines[index - 1].strip() if index else ""
        if not above.startswith("#") or _ENV_LINE.match(above):
            raise AssertionError(f"{path}:{index + 1}: {match['name']} has no comment above it")
        target = defaults if match["comment"] else values
        target[match["name"]] = match["value"]
    return values, defaults
