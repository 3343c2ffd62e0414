"""Every setting a service reads is wired into docker compose, .env.example and Kubernetes.

The settings are read from the services' own ``Settings`` classes, so a new setting that is not
wired (or at least documented as left at its default) everywhere fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploy_compose import load_compose
from deploy_kustomize import pod_spec, render
from deploy_settings import EnvSetting, env_settings, read_documented_env
from omost_llm.config import Settings as LlmSettings
from omost_renderer.config import Settings as RendererSettings

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "base" / "config"
OVERLAYS = sorted(p.name for p in (ROOT / "deploy" / "overlays").iterdir() if p.is_dir())

# service -> (settings, compose services, Kubernetes workloads and containers, env file)
SERVICES: dict[str, tuple[type[Any], list[str], dict[str, str], str]] = {
    "llm": (LlmSettings, ["llm"], {"omost-llm": "llm"}, "llm.env"),
    "renderer": (
        RendererSettings,
        ["renderer-api", "renderer-worker"],
        {"omost-renderer-api": "renderer-api", "omost-renderer-worker": "renderer-worker"},
        "renderer.env",
    ),
}


def _settings(service: str) -> list[EnvSetting]:
    return env_settings(SERVICES[service][0])


def _container_env(resources: list[dict[str, Any]], workload: str, container: str) -> set[str]:
    """Names a container gets from `env` and from the ConfigMaps of its `envFrom`."""
    config_maps = {r["metadata"]["name"]: r for r in resources if r["kind"] == "ConfigMap"}
    (resource,) = [
        r for r in resources if r["kind"] == "Deployment" and r["metadata"]["name"] == workload
    ]
    spec = pod_spec(resource)
    assert spec is not None
    (found,) = [c for c in spec["containers"] if c["name"] == container]
    names = {entry["name"] for entry in found.get("env", [])}
    for source in found.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(config_maps[source["configMapRef"]["name"]]["data"])
    return names


def test_settings_classes_are_found() -> None:
    # The wiring checks below are only as good as this list: a service with no settings found
    # would pass them all.
    for service in SERVICES:
        names = {s.name for s in _settings(service)}
        assert len(names) >= 4
    assert "OMOST_REDIS_URL" in {s.name for s in _settings("renderer")}
    assert "OMOST_LLM_BACKEND" in {s.name for s in _settings("llm")}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_setting_is_in_the_compose_environment(service: str) -> None:
    compose = load_compose(ROOT / "docker-compose.yml", {})
    for compose_service in SERVICES[service][1]:
        environment = compose["services"][compose_service]["environment"]
        missing = [s.name for s in _settings(service) if s.name not in environment]
        assert not missing, f"{compose_service} lacks {missing} in docker-compose.yml"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_setting_is_documented_in_env_example(service: str) -> None:
    values, defaults = read_documented_env(ROOT / ".env.example")
    missing = [s.name for s in _settings(service) if s.name not in values | defaults]
    assert not missing, f".env.example lacks {missing}"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_setting_reaches_the_kubernetes_pods(service: str, overlay: str) -> None:
    resources = render(ROOT / "deploy" / "overlays" / overlay)
    _, _, workloads, env_file = SERVICES[service]
    _, documented = read_documented_env(CONFIG / env_file)
    for workload, container in workloads.items():
        wired = _container_env(resources, workload, container) | set(documented)
        missing = [s.name for s in _settings(service) if s.name not in wired]
        assert not missing, f"{workload} in overlay {overlay} lacks {missing}"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_secret_settings_go_to_the_secret_not_a_config_map(service: str) -> None:
    values, _ = read_documented_env(CONFIG / SERVICES[service][3])
    _, secret_lines = read_documented_env(CONFIG / "secrets.env.example")
    secrets = [s.name for s in _settings(service) if s.secret]
    assert not [name for name in secrets if name in values]
    assert not [name for name in secrets if name not in secret_lines]


def test_documented_env_lines_need_a_comment(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("# What A is.\nA=1\nB=2\n")
    with pytest.raises(AssertionError, match="B has no comment"):
        read_documented_env(path)


def test_every_value_is_in_the_deployment_docs() -> None:
    docs = (ROOT / "docs" / "deployment.md").read_text()
    names: set[str] = set()
    for path in [ROOT / ".env.example", *CONFIG.glob("*.env"), CONFIG / "secrets.env.example"]:
        values, defaults = read_documented_env(path)
        names |= set(values) | set(defaults)
    for service in SERVICES:
        names |= {s.name for s in _settings(service)}
    missing = sorted(name for name in names if f"`{name}`" not in docs)
    assert not missing, f"docs/deployment.md lacks {missing}"
