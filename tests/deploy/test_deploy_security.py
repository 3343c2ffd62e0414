"""Safe network defaults: compose publishes on loopback unless OMOST_BIND says otherwise, and both
compose and Kubernetes make the services require API keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_compose import load_compose
from deploy_kustomize import render
from deploy_settings import read_documented_env
from omost_llm.config import Settings as LlmSettings
from omost_llm.main import create_app as create_llm_app
from omost_renderer.api import create_app as create_renderer_app
from omost_renderer.config import Settings as RendererSettings
from omost_schema.api_keys import ApiKeySettingError

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.name for p in (ROOT / "deploy" / "overlays").iterdir() if p.is_dir())


def test_compose_publishes_on_loopback_unless_omost_bind_says_otherwise() -> None:
    for environment, host in [({}, "127.0.0.1"), ({"OMOST_BIND": "0.0.0.0"}, "0.0.0.0")]:
        services = load_compose(ROOT / "docker-compose.yml", environment)["services"]
        published = [port for service in services.values() for port in service.get("ports", [])]
        assert published
        assert all(str(port).startswith(f"{host}:") for port in published), published


def test_compose_requires_api_keys_by_default() -> None:
    services = load_compose(ROOT / "docker-compose.yml", {})["services"]
    assert services["llm"]["environment"]["OMOST_LLM_REQUIRE_API_KEYS"] == "true"
    assert services["renderer-api"]["environment"]["OMOST_RENDERER_REQUIRE_API_KEYS"] == "true"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_requires_api_keys(overlay: str) -> None:
    resources = render(ROOT / "deploy" / "overlays" / overlay)
    data: dict[str, str] = {}
    for resource in resources:
        if resource["kind"] == "ConfigMap":
            data.update(resource.get("data", {}))
    assert data["OMOST_LLM_REQUIRE_API_KEYS"] == "true"
    assert data["OMOST_RENDERER_REQUIRE_API_KEYS"] == "true"
    # The keys themselves are secrets: documented for the Secret, never in a ConfigMap.
    _, secret_lines = read_documented_env(
        ROOT / "deploy" / "base" / "config" / "secrets.env.example"
    )
    for name in ("OMOST_LLM_API_KEYS", "OMOST_RENDERER_API_KEYS", "OMOST_RENDERER_LLM_API_KEY"):
        assert name not in data
        assert name in secret_lines


def test_a_service_that_requires_keys_refuses_to_start_without(tmp_path: Path) -> None:
    with pytest.raises(ApiKeySettingError, match="OMOST_RENDERER_API_KEYS is empty"):
        create_renderer_app(RendererSettings(results_dir=tmp_path, require_api_keys=True))
    llm = LlmSettings(model="test-model", warmup=False, require_api_keys=True)  # type: ignore[call-arg]
    with pytest.raises(ApiKeySettingError, match="OMOST_LLM_API_KEYS is empty"):
        create_llm_app(llm, backend=object())  # type: ignore[arg-type]


def test_the_commands_say_why_they_do_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from omost_llm.cli import main as llm_main
    from omost_renderer.cli import EXIT_CONFIGURATION
    from omost_renderer.cli import main as renderer_main

    monkeypatch.setenv("OMOST_RENDERER_REQUIRE_API_KEYS", "true")
    assert renderer_main(["api"]) == EXIT_CONFIGURATION
    monkeypatch.setenv("OMOST_LLM_API_KEYS", "alice=short")
    with pytest.raises(SystemExit, match="shorter than 16"):
        llm_main(["serve"])
