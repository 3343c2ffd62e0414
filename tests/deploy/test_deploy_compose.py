"""docker-compose.yml parses, validates against the compose specification and is wired right."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from compose_spec import PyCompose
from deploy_compose import interpolate, load_compose, variables
from deploy_settings import read_documented_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SERVICES = {"redis", "vllm", "llm", "renderer-api", "renderer-worker"}


def _example_environment() -> dict[str, str]:
    values, defaults = read_documented_env(ROOT / ".env.example")
    return {**defaults, **values}


@pytest.fixture(params=["defaults", "env-example"])
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    environment = {} if request.param == "defaults" else _example_environment()
    return load_compose(COMPOSE, environment)


def test_interpolation_follows_compose_rules() -> None:
    environment = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}/$$SET/$SET", environment) == (
        "x/d//d/$SET/x"
    )
    with pytest.raises(ValueError, match="NEEDED"):
        interpolate("${NEEDED:?set it}", environment)


def test_compose_file_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    parsed = PyCompose.from_json(json.dumps(compose))
    parsed.validate()
    assert set(parsed.service_names()) == SERVICES


def test_compose_spec_rejects_a_misspelt_key(compose: dict[str, Any]) -> None:
    compose["services"]["llm"]["helthcheck"] = compose["services"]["llm"].pop("healthcheck")
    with pytest.raises(ValueError, match="helthcheck"):
        PyCompose.from_json(json.dumps(compose))


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose plugin is not installed",
)
def test_docker_compose_config_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_every_compose_variable_is_documented_in_env_example() -> None:
    values, defaults = read_documented_env(ROOT / ".env.example")
    missing = sorted(variables(COMPOSE) - set(values) - set(defaults))
    assert not missing


def test_every_service_is_health_checked_and_waits_for_healthy_dependencies(
    compose: dict[str, Any],
) -> None:
    for name, service in compose["services"].items():
        assert service["healthcheck"]["test"], name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
    services = compose["services"]
    assert set(services["llm"]["depends_on"]) == {"vllm"}
    assert set(services["renderer-api"]["depends_on"]) == {"redis", "llm"}
    assert set(services["renderer-worker"]["depends_on"]) == {"redis"}


def test_redis_keeps_every_job(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert "redis-data:/data" in compose["services"]["redis"]["volumes"]


def test_vllm_serves_an_omost_model_with_pinned_structured_outputs(compose: dict[str, Any]) -> None:
    vllm = compose["services"]["vllm"]
    name, _, tag = vllm["image"].partition(":")
    assert name == "vllm/vllm-openai"
    assert tag.startswith("v")
    assert tag != "latest"
    command = vllm["command"]
    assert command[0].startswith("lllyasviel/omost-")
    config = json.loads(command[command.index("--structured-outputs-config") + 1])
    assert config == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert any(volume.endswith(":/models") for volume in vllm["volumes"])
    # The LLM service asks vLLM for the model it serves.
    served = command[command.index("--served-model-name") + 1]
    assert compose["services"]["llm"]["environment"]["OMOST_LLM_MODEL"] == served


def test_gpu_services_reserve_a_gpu_and_shared_memory(compose: dict[str, Any]) -> None:
    for name in ("vllm", "renderer-worker"):
        service = compose["services"][name]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"]
        assert service["shm_size"]
    worker = compose["services"]["renderer-worker"]
    assert "omost-renderer worker --check" in worker["healthcheck"]["test"][-1]
    assert any(volume.endswith(":/models") for volume in worker["volumes"])


def test_services_are_wired_to_each_other(compose: dict[str, Any]) -> None:
    services = compose["services"]
    llm, api, worker = services["llm"], services["renderer-api"], services["renderer-worker"]
    assert llm["environment"]["OMOST_LLM_BACKEND"] == "vllm"
    assert llm["environment"]["OMOST_LLM_BASE_URL"] == "http://vllm:8000"
    assert "--port" in llm["command"]
    assert llm["command"][-1] == "8000"
    assert api["command"][-1] == "8001"
    for renderer in (api, worker):
        assert renderer["environment"]["OMOST_REDIS_URL"] == "redis://redis:6379/0"
        assert renderer["environment"]["OMOST_RENDERER_LLM_URL"] == "http://llm:8000"
        results = renderer["environment"]["OMOST_RENDERER_RESULTS_DIR"]
        assert f"results:{results}" in renderer["volumes"]


def test_built_services_name_existing_dockerfiles(compose: dict[str, Any]) -> None:
    built = {name: s["build"] for name, s in compose["services"].items() if "build" in s}
    assert set(built) == {"llm", "renderer-api", "renderer-worker"}
    for build in built.values():
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
