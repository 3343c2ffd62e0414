"""A small, strict Kustomize renderer for the manifests under ``deploy/``.

No ``kustomize`` binary is needed to check the manifests offline: this renders the subset of
Kustomize they use (resources, components, ConfigMap generators, JSON 6902 patches, namespace,
labels and images) the way ``kubectl kustomize`` does, except that generated ConfigMaps keep their
plain names (no content hash). Any other field in a kustomization is an error, so a manifest
change that this renderer cannot follow fails the tests instead of passing unchecked.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

_KNOWN_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "configMapGenerator",
    "patches",
    "namespace",
    "labels",
    "images",
}
_CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
}


class KustomizeError(ValueError):
    """A kustomization uses something this renderer does not support, or is inconsistent."""


def render(directory: Path) -> list[Resource]:
    """Render the kustomization in ``directory`` into a list of resources."""
    return _run(directory, [], expect_kind="Kustomization")


def load_kustomization(directory: Path) -> dict[str, Any]:
    """Return the parsed ``kustomization.yaml`` of ``directory``."""
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise KustomizeError(f"{path} is not a mapping")
    unknown = set(data) - _KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: unsupported fields {sorted(unknown)}")
    return data


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a Kustomize ``envs`` file: ``KEY=VALUE`` lines; blank and ``#`` lines are skipped."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise KustomizeError(f"{path}:{number}: not KEY=VALUE: {raw!r}")
        values[key] = value
    return values


def _run(directory: Path, inputs: list[Resource], *, expect_kind: str) -> list[Resource]:
    kustomization = load_kustomization(directory)
    kind = kustomization.get("kind", "Kustomization")
    if kind != expect_kind:
        raise KustomizeError(f"{directory}: expected a {expect_kind}, found a {kind}")
    resources = list(inputs)
    for entry in kustomization.get("resources", []):
        resources += _load_resources(directory / entry)
    for entry in kustomization.get("components", []):
        resources = _run(directory / entry, resources, expect_kind="Component")
    for generator in kustomization.get("configMapGenerator", []):
        resources = _generate_config_map(directory, generator, resources)
    for patch in kustomization.get("patches", []):
        resources = _apply_patch(directory, patch, resources)
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in _CLUSTER_SCOPED_KINDS:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    for label in kustomization.get("labels", []):
        _apply_labels(label, resources)
    for image in kustomization.get("images", []):
        _apply_image(image, resources)
    return resources


def _load_resources(path: Path) -> list[Resource]:
    if path.is_dir():
        return _run(path, [], expect_kind="Kustomization")
    if not path.is_file():
        raise KustomizeError(f"missing resource {path}")
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for document in documents:
        if not isinstance(document, dict) or "kind" not in document or "metadata" not in document:
            raise KustomizeError(f"{path}: a document is not a Kubernetes resource")
    return documents


def _generate_config_map(
    directory: Path, generator: dict[str, Any], resources: list[Resource]
) -> list[Resource]:
    unknown = set(generator) - {"name", "envs", "files", "literals", "behavior"}
    if unknown:
        raise KustomizeError(f"configMapGenerator: unsupported fields {sorted(unknown)}")
    data: dict[str, str] = {}
    for env_file in generator.get("envs", []):
        data.update(read_env_file(directory / env_file))
    for file_name in generator.get("files", []):
        path = directory / file_name
        data[path.name] = path.read_text()
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    name = generator["name"]
    existing = [r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == name]
    behavior = generator.get("behavior", "create")
    if behavior == "create":
        if existing:
            raise KustomizeError(f"ConfigMap {name} is generated twice")
        config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
        return [*resources, {**config_map, "data": data}]
    if len(existing) != 1:
        raise KustomizeError(f"ConfigMap {name} to {behavior} does not exist")
    if behavior == "merge":
        existing[0]["data"].update(data)
    elif behavior == "replace":
        existing[0]["data"] = data
    else:
        raise KustomizeError(f"unknown generator behavior {behavior!r}")
    return resources


def _matches(target: dict[str, Any], resource: Resource) -> bool:
    group, _, version = resource["apiVersion"].rpartition("/")
    wanted = {
        "group": group,
        "version": version,
        "kind": resource["kind"],
        "name": resource["metadata"]["name"],
    }
    unknown = set(target) - set(wanted)
    if unknown:
        raise KustomizeError(f"patch target: unsupported fields {sorted(unknown)}")
    return all(wanted[key] == value for key, value in target.items())


def _apply_patch(
    directory: Path, patch: dict[str, Any], resources: list[Resource]
) -> list[Resource]:
    if set(patch) != {"target", "patch"}:
        raise KustomizeError(
            f"{directory}: only inline JSON 6902 patches with a target are supported"
        )
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise KustomizeError(f"{directory}: a patch must be a list of JSON 6902 operations")
    targets = [r for r in resources if _matches(patch["target"], r)]
    if not targets:
        raise KustomizeError(f"{directory}: patch target {patch['target']} matches nothing")
    for resource in targets:
        for operation in operations:
            _apply_operation(resource, operation)
    return resources


def _apply_operation(resource: Resource, operation: dict[str, Any]) -> None:
    op, path = operation["op"], operation["path"]
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    parent: Any = resource
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    key: int | str = int(last) if isinstance(parent, list) and last != "-" else last
    if op == "remove":
        if isinstance(parent, dict) and key not in parent:
            raise KustomizeError(f"remove: {path} does not exist")
        del parent[key]
    elif op == "replace":
        if isinstance(parent, dict) and key not in parent:
            raise KustomizeError(f"replace: {path} does not exist")
        parent[key] = copy.deepcopy(operation["value"])
    elif op == "add":
        if isinstance(parent, list):
            parent.insert(
                len(parent) if key == "-" else int(key), copy.deepcopy(operation["value"])
            )
        else:
            parent[key] = copy.deepcopy(operation["value"])
    else:
        raise KustomizeError(f"unsupported patch operation {op!r}")


def _apply_labels(label: dict[str, Any], resources: list[Resource]) -> None:
    if label.get("includeSelectors", False) or label.get("includeTemplates", False):
        raise KustomizeError("labels: only plain metadata labels are supported")
    for resource in resources:
        resource["metadata"].setdefault("labels", {}).update(label["pairs"])


def pod_spec(resource: Resource) -> dict[str, Any] | None:
    """Return the pod spec of a workload resource, or None for other kinds."""
    if resource["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        spec: dict[str, Any] = resource["spec"]["template"]["spec"]
        return spec
    return None


def split_image(reference: str) -> tuple[str, str]:
    """Split ``name[:tag]`` (a registry host may carry a port) into name and tag."""
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, ""
    return name, tag


def _apply_image(image: dict[str, Any], resources: list[Resource]) -> None:
    for resource in resources:
        spec = pod_spec(resource)
        if spec is None:
            continue
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, tag = split_image(container["image"])
            if name == image["name"]:
                new_tag = str(image.get("newTag", tag))
                container["image"] = f"{image.get('newName', name)}:{new_tag}"
