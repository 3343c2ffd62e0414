"""The Dockerfiles parse, copy only existing, non-ignored files, and run the documented commands."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
# Dockerfile -> (console script's package, command it runs, whether it needs a CUDA base image)
IMAGES = {
    "llm.Dockerfile": ("services/llm", ["omost-llm", "serve"], False),
    "renderer-api.Dockerfile": ("services/renderer", ["omost-renderer", "api"], False),
    "renderer-worker.Dockerfile": ("services/renderer", ["omost-renderer", "worker"], True),
}


def _instructions(name: str) -> list[dict[str, Any]]:
    parser = DockerfileParser(path=str(DOCKER / name), cache_content=True)
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def _values(name: str, instruction: str) -> list[str]:
    return [str(i["value"]) for i in _instructions(name) if i["instruction"] == instruction]


def _arg_defaults(name: str) -> dict[str, str]:
    defaults = {}
    for value in _values(name, "ARG"):
        key, _, default = value.partition("=")
        defaults[key] = default.strip('"')
    return defaults


def _ignored_roots() -> set[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return {line.strip().rstrip("/") for line in lines if line.strip() and line[0] != "#"}


def test_every_image_has_a_dockerfile() -> None:
    assert {p.name for p in DOCKER.glob("*.Dockerfile")} == set(IMAGES)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_copy_sources_exist_and_are_not_ignored(name: str) -> None:
    copies = _values(name, "COPY")
    assert copies
    ignored = _ignored_roots()
    for value in copies:
        assert not value.startswith("--from"), "multi-stage copies need their own check"
        *sources, _destination = value.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert Path(source).parts[0] not in ignored, source
    # Every installable package that is copied is installed (with its dependencies).
    installs = " ".join(_values(name, "RUN"))
    for value in copies:
        source = value.split()[0].rstrip("/")
        if (ROOT / source / "pyproject.toml").is_file():
            assert re.search(rf"pip install .*\./{re.escape(source)}\b", installs), source


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_cmd_runs_the_documented_command(name: str) -> None:
    package, command, _ = IMAGES[name]
    (cmd,) = _values(name, "CMD")
    # The exec form, so the service is PID 1 and gets SIGTERM itself.
    argv = json.loads(cmd)
    assert argv[: len(command)] == command
    scripts = tomllib.loads((ROOT / package / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts
    if "--port" in argv:
        assert _values(name, "EXPOSE") == [argv[argv.index("--port") + 1]]


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_base_image_fits_the_service(name: str) -> None:
    (base,) = _values(name, "FROM")
    defaults = _arg_defaults(name)
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], base)
    if IMAGES[name][2]:
        assert resolved.startswith("nvidia/cuda:")
        assert "runtime" in resolved or "devel" in resolved
    else:
        assert resolved.startswith("python:3.11")


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_runs_as_an_unprivileged_user_with_the_projects_torch(name: str) -> None:
    users = _values(name, "USER")
    assert users
    assert users[-1] not in {"0", "root"}
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"torch==([0-9.]+)", makefile)
    assert pinned is not None
    assert _arg_defaults(name)["TORCH_VERSION"] == pinned.group(1)
