"""One worker group per model: the compose override and the Kubernetes overlay, SDXL and FLUX."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from compose_spec import PyCompose
from deploy_compose import load_compose
from deploy_kustomize import pod_spec, render

ROOT = Path(__file__).resolve().parents[2]
SCHNELL = "black-forest-labs/FLUX.1-schnell"
SDXL = "SG161222/RealVisXL_V4.0"


class _OverrideLoader(yaml.SafeLoader):
    """YAML with compose's ``!override`` tag (the tagged node replaces, not merges)."""


def _override(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> list[Any]:
    return loader.construct_sequence(node, deep=True)


_OverrideLoader.add_constructor("!override", _override)


def _merged_compose() -> dict[str, Any]:
    """docker-compose.yml with docker-compose.models.yml applied as compose applies it."""
    base = load_compose(ROOT / "docker-compose.yml", {})
    override = yaml.load((ROOT / "docker-compose.models.yml").read_text(), _OverrideLoader)
    services = base["services"]
    api, flux = override["services"]["renderer-api"], override["services"]["renderer-worker-flux"]
    services["renderer-api"]["environment"].update(api["environment"])
    extends = flux.pop("extends")
    assert extends == {"file": "docker-compose.yml", "service": "renderer-worker"}
    worker = copy.deepcopy(services["renderer-worker"])
    worker["environment"].update(flux.pop("environment"))
    worker["deploy"] = flux.pop("deploy")
    worker["healthcheck"].update(flux.pop("healthcheck"))
    assert not flux
    services["renderer-worker-flux"] = worker
    # Interpolated with no variables set, as load_compose does for the base.
    text = json.dumps(base).replace("${OMOST_RENDERER_MODEL:-SG161222/RealVisXL_V4.0}", SDXL)
    merged: dict[str, Any] = json.loads(text)
    return merged


def test_the_compose_override_adds_a_flux_worker_on_its_own_gpu() -> None:
    compose = _merged_compose()
    PyCompose.from_json(json.dumps(compose)).validate()
    services = compose["services"]
    sdxl, flux = services["renderer-worker"], services["renderer-worker-flux"]
    assert sdxl["environment"]["OMOST_RENDERER_MODEL"] == SDXL
    assert flux["environment"]["OMOST_RENDERER_MODEL"] == SCHNELL
    assert services["renderer-api"]["environment"]["OMOST_RENDERER_DEFAULT_MODEL"] == SDXL
    gpus = [
        service["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
        for service in (sdxl, flux)
    ]
    assert gpus == [["0"], ["1"]]
    # Everything else the worker reads is the SDXL worker's: the same results store and queue
    # (its volumes too: _merged_compose refuses an override that sets anything but the model's
    # environment, its devices and its health check).
    shared = set(sdxl["environment"]) - {"OMOST_RENDERER_MODEL", "OMOST_RENDERER_DTYPE"}
    assert all(flux["environment"][name] == sdxl["environment"][name] for name in shared)


def test_the_two_models_overlay_runs_an_sdxl_and_a_flux_worker_group() -> None:
    resources = render(ROOT / "deploy" / "overlays" / "gpu-box-two-models")
    workers = {
        r["metadata"]["name"]: r
        for r in resources
        if r["kind"] == "Deployment" and r["metadata"]["name"].startswith("omost-renderer-worker")
    }
    assert set(workers) == {"omost-renderer-worker", "omost-renderer-worker-flux"}
    (config,) = [
        r for r in resources
        if r["kind"] == "ConfigMap" and r["metadata"]["name"] == "omost-renderer-config"
    ]  # fmt: skip
    assert config["data"]["OMOST_RENDERER_DEFAULT_MODEL"] == config["data"]["OMOST_RENDERER_MODEL"]
    assert config["data"]["OMOST_RENDERER_MODEL"] == SDXL
    for name, worker in workers.items():
        spec = pod_spec(worker)
        assert spec is not None
        (container,) = spec["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env.get("OMOST_RENDERER_MODEL") == (SCHNELL if name.endswith("flux") else None)
        labels = worker["spec"]["selector"]["matchLabels"]
        assert labels == {"app.kubernetes.io/name": name}
        assert worker["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == name
    budgets = {
        r["metadata"]["name"]: r["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for r in resources
        if r["kind"] == "PodDisruptionBudget" and r["metadata"]["name"] in workers
    }
    assert budgets == {name: name for name in workers}
