"""Read a ``.env`` file: ``KEY=VALUE`` lines, ``#`` comments, optional quotes. No expansion."""

from __future__ import annotations

from pathlib import Path


def read_dotenv(path: Path) -> dict[str, str]:
    """Return the settings of a ``.env`` file, or an empty dict when it does not exist.

    Args:
        path: The file to read.

    Returns:
        Variable names mapped to their values, in file order.

    Raises:
        ValueError: If a non-blank, non-comment line has no ``=`` (with the line number).
    """
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values
