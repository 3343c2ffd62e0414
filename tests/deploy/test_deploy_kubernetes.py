"""The Kubernetes manifests render, validate offline against the Kubernetes schemas, and agree."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from deploy_kustomize import (
    KustomizeError,
    load_kustomization,
    pod_spec,
    read_env_file,
    render,
    split_image,
)
from omost_renderer.job_queue import constants

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
# The oldest Kubernetes release the manifests are meant for.
KUBERNETES_VERSION = "1.29"
REDIS_OVERLAYS = [
    name
    for name in OVERLAYS
    if "../../components/redis"
    in load_kustomization(DEPLOY / "overlays" / name).get("components", [])
]
CRD_SCHEMAS = {"ScaledObject": "scaledobject.json", "ServiceMonitor": "servicemonitor.json"}

Resource = dict[str, Any]


@cache
def _rendered(overlay: str) -> tuple[Resource, ...]:
    return tuple(render(DEPLOY / "overlays" / overlay))


def _resources(overlay: str) -> list[Resource]:
    # A fresh deep copy per test, so no test sees another's edits.
    loaded: list[Resource] = json.loads(json.dumps(_rendered(overlay)))
    return loaded


def _one(resources: list[Resource], kind: str, name: str) -> Resource:
    (found,) = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def _container(resource: Resource, name: str) -> dict[str, Any]:
    spec = pod_spec(resource)
    assert spec is not None
    (found,) = [c for c in spec["containers"] if c["name"] == name]
    container: dict[str, Any] = found
    return container


def _workloads(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if pod_spec(r) is not None]


def test_overlays_exist() -> None:
    assert {"cluster", "gpu-box", "cluster-external-redis"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_resources_validate_against_the_kubernetes_schemas(overlay: str) -> None:
    core = [r for r in _resources(overlay) if r["kind"] not in CRD_SCHEMAS]
    assert len(core) >= 10
    for resource in core:
        # strict: unknown fields (a typo, a field at the wrong level) are errors too.
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_their_schemas(overlay: str) -> None:
    for resource in _resources(overlay):
        if resource["kind"] in CRD_SCHEMAS:
            schema = json.loads(
                (Path(__file__).parent / "schemas" / CRD_SCHEMAS[resource["kind"]]).read_text()
            )
            jsonschema.Draft202012Validator(schema).validate(resource)


def test_a_broken_resource_fails_validation() -> None:
    worker = _one(_resources("cluster"), "Deployment", "omost-renderer-worker")
    _container(worker, "renderer-worker")["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_names_are_unique_and_namespaced(overlay: str) -> None:
    resources = _resources(overlay)
    keys = [(r["kind"], r["metadata"]["name"]) for r in resources]
    assert len(keys) == len(set(keys))
    namespace = load_kustomization(DEPLOY / "overlays" / overlay)["namespace"]
    assert {r["metadata"].get("namespace") for r in resources} == {namespace}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_between_resources_resolve(overlay: str) -> None:
    resources = _resources(overlay)
    config_maps = {r["metadata"]["name"]: r["data"] for r in resources if r["kind"] == "ConfigMap"}
    claims = {r["metadata"]["name"] for r in resources if r["kind"] == "PersistentVolumeClaim"}
    for workload in _workloads(resources):
        spec = pod_spec(workload)
        assert spec is not None
        template_labels = workload["spec"]["template"]["metadata"]["labels"]
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template_labels.items()
        template_claims = {
            c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])
        }
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in template_claims
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    # The Secret is the operator's to create; pods must start without it.
                    assert source["secretRef"]["optional"] is True
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("configMapKeyRef")
                if ref is not None:
                    assert ref["key"] in config_maps[ref["name"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_of_services_budgets_and_monitors_match(overlay: str) -> None:
    resources = _resources(overlay)
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in _workloads(resources)]
    services = [r for r in resources if r["kind"] == "Service"]
    for resource in resources:
        if resource["kind"] == "Service":
            selector = resource["spec"]["selector"]
        elif resource["kind"] == "PodDisruptionBudget":
            selector = resource["spec"]["selector"]["matchLabels"]
        else:
            continue
        assert any(selector.items() <= labels.items() for labels in pod_labels), resource
    for monitor in (r for r in resources if r["kind"] == "ServiceMonitor"):
        wanted = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    for scaled in (r for r in resources if r["kind"] == "ScaledObject"):
        target = _one(resources, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
        # KEDA owns the count: a `replicas` in the Deployment would reset it on every apply.
        assert "replicas" not in target["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_vllm_is_pinned_constrained_and_probed_for_a_slow_start(overlay: str) -> None:
    resources = _resources(overlay)
    vllm = _container(_one(resources, "Deployment", "omost-vllm"), "vllm")
    name, tag = split_image(vllm["image"])
    assert name == "vllm/vllm-openai"
    assert tag.startswith("v")
    assert tag != "latest"
    args = vllm["args"]
    config = json.loads(args[args.index("--structured-outputs-config") + 1])
    assert config == {"backend": "xgrammar", "disable_any_whitespace": True}
    startup = vllm["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60
    assert vllm["readinessProbe"]["httpGet"]["path"] == "/health"
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    mounts = {m["mountPath"] for m in vllm["volumeMounts"]}
    assert {"/models", "/dev/shm"} <= mounts
    vllm_config = _one(resources, "ConfigMap", "omost-vllm-config")["data"]
    assert vllm_config["OMOST_VLLM_MODEL"].startswith("lllyasviel/omost-")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_render_worker_gets_a_gpu_shared_memory_and_a_queue_probe(overlay: str) -> None:
    resources = _resources(overlay)
    deployment = _one(resources, "Deployment", "omost-renderer-worker")
    worker = _container(deployment, "renderer-worker")
    assert worker["command"] == ["omost-renderer", "worker"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    check = ["omost-renderer", "worker", "--check"]
    assert worker["startupProbe"]["exec"]["command"] == check
    assert worker["livenessProbe"]["exec"]["command"] == check
    spec = pod_spec(deployment)
    assert spec is not None
    (shm_mount,) = [m for m in worker["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    (shm,) = [v for v in spec["volumes"] if v["name"] == shm_mount["name"]]
    assert shm["emptyDir"]["medium"] == "Memory"
    # The probe asks about this pod's worker: its consumer name is the pod's name.
    names = {e["name"]: e for e in worker["env"]}
    field = names["OMOST_RENDERER_WORKER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.name"
    # A stopping worker finishes or releases its job before the kubelet kills it.
    grace = float(
        _one(resources, "ConfigMap", "omost-renderer-config")["data"][
            "OMOST_RENDERER_SHUTDOWN_GRACE_S"
        ]
    )
    assert grace < spec["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_http_services_are_probed_on_health_and_ready(overlay: str) -> None:
    resources = _resources(overlay)
    for workload, container in [("omost-llm", "llm"), ("omost-renderer-api", "renderer-api")]:
        found = _container(_one(resources, "Deployment", workload), container)
        assert found["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert found["livenessProbe"]["httpGet"]["path"] == "/health"
    commands = {
        "omost-llm": ["omost-llm", "serve"],
        "omost-renderer-api": ["omost-renderer", "api"],
    }
    for workload, command in commands.items():
        (container,) = pod_spec(_one(resources, "Deployment", workload))["containers"]  # type: ignore[index]
        assert container["command"][:2] == command


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_talk_to_each_other_by_service_name(overlay: str) -> None:
    resources = _resources(overlay)
    services = {
        r["metadata"]["name"]: r["spec"]["ports"][0]["port"]
        for r in resources
        if r["kind"] == "Service"
    }
    llm = _one(resources, "ConfigMap", "omost-llm-config")["data"]
    renderer = _one(resources, "ConfigMap", "omost-renderer-config")["data"]
    assert llm["OMOST_LLM_BASE_URL"] == f"http://omost-vllm:{services['omost-vllm']}"
    assert renderer["OMOST_RENDERER_LLM_URL"] == f"http://omost-llm:{services['omost-llm']}"
    if "omost-redis" in services:
        assert renderer["OMOST_REDIS_URL"].startswith(
            f"redis://omost-redis:{services['omost-redis']}/"
        )


@pytest.mark.parametrize("overlay", REDIS_OVERLAYS)
def test_bundled_redis_keeps_every_job(overlay: str) -> None:
    resources = _resources(overlay)
    assert _one(resources, "StatefulSet", "omost-redis")
    conf = _one(resources, "ConfigMap", "omost-redis-config")["data"]["redis.conf"]
    settings = dict(line.split(maxsplit=1) for line in conf.splitlines() if line and line[0] != "#")
    assert settings["appendonly"] == "yes"
    assert settings["maxmemory-policy"] == "noeviction"


def test_autoscaling_follows_the_render_queue_and_vllm_waiting_requests() -> None:
    resources = _resources("cluster")
    namespace = load_kustomization(DEPLOY / "overlays" / "cluster")["namespace"]
    worker = _one(resources, "ScaledObject", "omost-renderer-worker")
    triggers = worker["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis-streams"}
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert metadata["stream"] == constants.STREAM_KEY
        assert metadata.get("consumerGroup", constants.GROUP_NAME) == constants.GROUP_NAME
        # KEDA runs in its own namespace: the Redis address must be fully qualified.
        assert metadata["address"].startswith(f"omost-redis.{namespace}.svc")
    assert any("lagCount" in t["metadata"] for t in triggers)
    vllm = _one(resources, "ScaledObject", "omost-vllm")
    (trigger,) = vllm["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert "vllm:num_requests_waiting" in trigger["metadata"]["query"]
    assert f'namespace="{namespace}"' in trigger["metadata"]["query"]


def test_external_redis_overlay_points_everything_at_one_redis() -> None:
    resources = _resources("cluster-external-redis")
    assert not [r for r in resources if r["metadata"]["name"] == "omost-redis"]
    url = _one(resources, "ConfigMap", "omost-renderer-config")["data"]["OMOST_REDIS_URL"]
    host_port = url.removeprefix("redis://").split("/")[0]
    for trigger in _one(resources, "ScaledObject", "omost-renderer-worker")["spec"]["triggers"]:
        assert trigger["metadata"]["address"] == host_port


def test_gpu_box_overlay_needs_no_operators_and_single_node_storage() -> None:
    resources = _resources("gpu-box")
    assert not [r for r in resources if r["kind"] in CRD_SCHEMAS]
    claims = [r for r in resources if r["kind"] == "PersistentVolumeClaim"]
    assert claims
    assert all(c["spec"]["accessModes"] == ["ReadWriteOnce"] for c in claims)


def test_images_are_retargeted_by_the_overlay() -> None:
    overlay = load_kustomization(DEPLOY / "overlays" / "cluster")
    wanted = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in overlay["images"]}
    resources = _resources("cluster")
    images = {
        c["image"]
        for w in _workloads(resources)
        for c in pod_spec(w)["containers"]  # type: ignore[index]
    }
    assert set(wanted.values()) <= images


def test_renderer_rejects_what_it_does_not_understand(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nhelmCharts: []\n")
    with pytest.raises(KustomizeError, match="helmCharts"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [a.yaml]\npatches:\n  - target: {kind: Service}\n"
        "    patch: '[{op: remove, path: /spec/x}]'\n"
    )
    (tmp_path / "a.yaml").write_text("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: a}\n")
    with pytest.raises(KustomizeError, match="matches nothing"):
        render(tmp_path)


def test_env_files_are_plain_key_value_lines() -> None:
    for path in (DEPLOY / "base" / "config").glob("*.env"):
        values = read_env_file(path)
        assert values, path
        assert all(key.isupper() for key in values)
