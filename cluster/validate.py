"""Offline validation of KubeRay manifests (ray.io/v1 RayCluster and RayJob), for operators before `kubectl apply`:

    python cluster/validate.py cluster/raycluster.yaml cluster/rayjob.yaml   # exit 1 and one line per error


Two layers, both without a Kubernetes API server and without Ray:

1. The CRD's OpenAPI v3 schema (``spec.versions[v1].schema.openAPIV3Schema``), checked with jsonschema after a
   small translation of the Kubernetes extensions: ``x-kubernetes-int-or-string``, ``nullable``, int32/int64 bounds,
   and unknown fields rejected the way ``kubectl apply`` does by default (strict server-side field validation;
   the API server would otherwise silently prune them, so a typo such as ``replica:`` would be lost).
2. The rules the KubeRay controller and webhook enforce in Go, which the schema does not express: name length and
   DNS-1035 form, TTL only with shutdown, worker group bounds, resource conflicts, and quantity checks for
   GPU and other resources.

CEL rules (``x-kubernetes-validations``) are not evaluated; none of them concern fields our manifests set.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml

logger = logging.getLogger(__name__)

CRD_ENV = "GENBENCH_KUBERAY_CRDS"


class UsageError(ValueError):
    """A bad argument of the validator itself (not a manifest error): names the field, the value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: Any):
        if not isinstance(allowed, str):
            allowed = "one of " + ", ".join(str(a) for a in allowed)
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}: got {value!r}; allowed: {allowed}")

CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
API_VERSION = "ray.io/v1"

# The RayJob controller names its cluster "<job name>-<5 random chars>" and the head service must fit in 63.
MAX_RAYJOB_NAME = 47
MAX_RAYCLUSTER_NAME = 63

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# k8s resource.Quantity: a signed decimal, then a binary (Ki..Ei) or decimal (n..E) suffix or an exponent.
_QUANTITY = re.compile(
    r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(\d+(\.\d*)?|\.\d+)))?$"
)
# rayStartParams that declare resources; KubeRay refuses them together with the group's `resources` field.
_RAY_START_RESOURCE_KEYS = ("num-cpus", "num-gpus", "memory", "resources")
_INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def default_crd_dir() -> Path:
    """The CRD directory: $GENBENCH_KUBERAY_CRDS, else the copies in ``cluster/crds/`` beside this file."""
    env = os.environ.get(CRD_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "crds"


def load_schema(kind: str, crd_dir: Path | None = None) -> dict:
    """The translated v1 openAPIV3Schema of `kind` ('RayCluster' or 'RayJob')."""
    if kind not in CRD_FILES:
        raise UsageError("kind", kind, CRD_FILES)
    directory = Path(crd_dir) if crd_dir is not None else default_crd_dir()
    return _load_schema_cached(kind, str(directory.resolve()))


@functools.lru_cache(maxsize=8)
def _load_schema_cached(kind: str, directory: str) -> dict:
    path = Path(directory) / CRD_FILES[kind]
    if not path.is_file():
        raise UsageError(
            "crd_dir", directory, f"a directory holding {', '.join(CRD_FILES.values())} (or set ${CRD_ENV})"
        )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are ~1 MB: use libyaml when present
    with path.open("r", encoding="utf-8") as f:
        crd = yaml.load(f, Loader=loader)
    for version in crd.get("spec", {}).get("versions", []):
        if version.get("name") == "v1":
            schema = version["schema"]["openAPIV3Schema"]
            _translate(schema)
            logger.debug("loaded %s schema from %s", kind, path)
            return schema
    raise UsageError("crd_dir", str(path), "a CRD with a v1 version")


def _translate(node: Any) -> None:
    """Rewrite Kubernetes OpenAPI extensions in place into plain JSON-schema (draft 4) keywords."""
    if isinstance(node, list):
        for item in node:
            _translate(item)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _translate(value)
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    bounds = _INT_BOUNDS.get(node.get("format", ""))
    if bounds and node.get("type") == "integer":
        node.setdefault("minimum", bounds[0])
        node.setdefault("maximum", bounds[1])
    # A structural object with known properties: anything else is an unknown field (strict field validation).
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False


def format_path(parts: Any) -> str:
    """A JSON path as an operator reads it: spec.workerGroupSpecs[0].template...limits["nvidia.com/gpu"]."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", str(part)):
            out += ("." if out else "") + str(part)
        else:
            out += f'["{part}"]'
    return out or "<root>"


def _schema_errors(doc: dict, schema: dict) -> Iterator[tuple[str, str]]:
    validator = jsonschema.Draft4Validator(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = set(err.schema.get("properties", {}))
            for extra in sorted(set(err.instance) - known):
                yield format_path(path + [extra]), "unknown field (not in the CRD schema)"
            continue
        if err.validator == "pattern" and err.schema.get("x-kubernetes-int-or-string"):
            # The raw quantity regex means nothing to an operator; say what is expected instead.
            yield format_path(path), f"{err.instance!r} is not a Kubernetes quantity (e.g. 1, \"500m\", \"32Gi\")"
            continue
        yield format_path(path), err.message


def validate_manifest(doc: dict, crd_dir: Path | None = None) -> list[str]:
    """Every problem with one RayCluster or RayJob manifest, each as 'field.path: message'; empty when valid."""
    if not isinstance(doc, dict):
        return [f"<root>: a manifest must be a mapping, got {type(doc).__name__}"]
    kind = doc.get("kind")
    if kind not in CRD_FILES:
        return [f"kind: got {kind!r}; allowed: one of {', '.join(CRD_FILES)}"]
    errors: list[str] = []
    if doc.get("apiVersion") != API_VERSION:
        errors.append(f"apiVersion: got {doc.get('apiVersion')!r}; allowed: {API_VERSION}")
    schema_errors = list(_schema_errors(doc, load_schema(kind, crd_dir)))
    errors += [f"{path}: {msg}" for path, msg in schema_errors]
    flagged = {path for path, _ in schema_errors}

    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    limit = MAX_RAYJOB_NAME if kind == "RayJob" else MAX_RAYCLUSTER_NAME
    errors += _name_errors("metadata.name", meta.get("name"), limit, kind)

    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    if kind == "RayJob":
        errors += _rayjob_errors(spec)
        if isinstance(spec.get("rayClusterSpec"), dict):
            errors += _cluster_spec_errors(spec["rayClusterSpec"], ["spec", "rayClusterSpec"])
    else:
        errors += _cluster_spec_errors(spec, ["spec"])
    errors += [e for e in _quantity_errors(doc, []) if e.split(": ", 1)[0] not in flagged]
    return errors


def validate_file(path: str | Path, crd_dir: Path | None = None) -> list[str]:
    """Validate every document of a YAML file; errors of a multi-document file are prefixed with 'doc N'."""
    path = Path(path)
    if not path.is_file():
        raise UsageError("path", str(path), "an existing YAML manifest file")
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except yaml.YAMLError as exc:
        return [f"{path}: not valid YAML: {exc}"]
    if not docs:
        return [f"{path}: no YAML document"]
    errors: list[str] = []
    for i, doc in enumerate(docs):
        prefix = f"doc {i}: " if len(docs) > 1 else ""
        errors += [prefix + e for e in validate_manifest(doc, crd_dir)]
    return errors


def is_quantity(value: Any) -> bool:
    """True for a Kubernetes resource quantity: an int, or a string like '1', '500m', '32Gi', '1e3'."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and _QUANTITY.match(value) is not None


def _name_errors(field: str, name: Any, limit: int, kind: str) -> list[str]:
    if not isinstance(name, str) or not name:
        return [f"{field}: required (a DNS-1035 label of at most {limit} characters)"]
    errors = []
    if len(name) > limit:
        errors.append(f"{field}: {kind} name {name!r} has {len(name)} characters; at most {limit} allowed")
    if not _DNS1035.match(name):
        errors.append(
            f"{field}: {name!r} is not a DNS-1035 label (lower-case letters, digits and '-', "
            "starting with a letter, ending with a letter or digit)"
        )
    return errors


def _rayjob_errors(spec: dict) -> list[str]:
    errors = []
    ttl = spec.get("ttlSecondsAfterFinished", 0)
    shutdown = spec.get("shutdownAfterJobFinishes", False)
    if isinstance(ttl, int) and ttl > 0 and shutdown is not True:
        errors.append(
            "spec.ttlSecondsAfterFinished: set to %d but spec.shutdownAfterJobFinishes is not true; "
            "the TTL only applies when the cluster is shut down after the job" % ttl
        )
    if isinstance(ttl, int) and ttl < 0:
        errors.append(f"spec.ttlSecondsAfterFinished: got {ttl}; allowed: a non-negative integer")
    if spec.get("suspend") is True and shutdown is not True:
        errors.append("spec.suspend: a RayJob can be suspended only with spec.shutdownAfterJobFinishes: true")
    if not spec.get("rayClusterSpec") and not spec.get("clusterSelector"):
        errors.append("spec.rayClusterSpec: one of spec.rayClusterSpec or spec.clusterSelector must be set")
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= 0:
        errors.append(f"spec.activeDeadlineSeconds: got {deadline}; allowed: a positive integer")
    backoff = spec.get("backoffLimit")
    if isinstance(backoff, int) and backoff < 0:
        errors.append(f"spec.backoffLimit: got {backoff}; allowed: a non-negative integer")
    runtime_env = spec.get("runtimeEnvYAML")
    if isinstance(runtime_env, str) and runtime_env.strip():
        try:
            parsed = yaml.safe_load(runtime_env)
        except yaml.YAMLError as exc:
            errors.append(f"spec.runtimeEnvYAML: not valid YAML: {exc}".replace("\n", " "))
        else:
            if not isinstance(parsed, dict):
                errors.append(f"spec.runtimeEnvYAML: must be a YAML mapping, got {type(parsed).__name__}")
    return errors


def _cluster_spec_errors(spec: dict, at: list) -> list[str]:
    errors = []
    head = spec.get("headGroupSpec") if isinstance(spec.get("headGroupSpec"), dict) else {}
    groups = [(at + ["headGroupSpec"], "head", head)]
    workers = spec.get("workerGroupSpecs") or []
    seen: set[str] = set()
    for i, group in enumerate(workers if isinstance(workers, list) else []):
        if not isinstance(group, dict):
            continue
        here = at + ["workerGroupSpecs", i]
        name = group.get("groupName")
        groups.append((here, f"worker group {name!r}", group))
        if name in seen:
            errors.append(f"{format_path(here + ['groupName'])}: duplicate worker group name {name!r}")
        seen.add(name)
        errors += _replica_errors(group, here)
    autoscaler_v2 = (spec.get("autoscalerOptions") or {}).get("version") == "v2" and spec.get(
        "enableInTreeAutoscaling"
    )
    for here, label, group in groups:
        errors += _group_errors(here, label, group, bool(autoscaler_v2))
    return errors


def _group_errors(here: list, label: str, group: dict, autoscaler_v2: bool) -> list[str]:
    """KubeRay's per-group rules: a container, resources declared one way, no labels in rayStartParams."""
    errors = []
    pod_spec = (group.get("template") or {}).get("spec") or {}
    if not pod_spec.get("containers"):
        errors.append(f"{format_path(here + ['template', 'spec', 'containers'])}: {label} needs at least one container")
    params = group.get("rayStartParams") or {}
    if any(params.get(k) for k in _RAY_START_RESOURCE_KEYS) and group.get("resources"):
        errors.append(f"{format_path(here + ['resources'])}: {label} also sets resources in rayStartParams; use one")
    if "labels" in params:
        errors.append(f"{format_path(here + ['rayStartParams', 'labels'])}: not supported; use the group's labels")
    policy = pod_spec.get("restartPolicy")
    if autoscaler_v2 and policy not in (None, "", "Never"):
        where = format_path(here + ["template", "spec", "restartPolicy"])
        errors.append(f"{where}: must be Never or unset with autoscaler v2")
    return errors


def _replica_errors(group: dict, here: list) -> list[str]:
    lo, hi, n = group.get("minReplicas"), group.get("maxReplicas"), group.get("replicas")
    errors = []
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi))
    if ints and lo > hi:
        errors.append(f"{format_path(here + ['minReplicas'])}: {lo} is greater than maxReplicas {hi}")
    elif ints and isinstance(n, int) and not lo <= n <= hi:
        errors.append(f"{format_path(here + ['replicas'])}: {n} is outside [minReplicas {lo}, maxReplicas {hi}]")
    return errors


def _quantity_errors(node: Any, path: list) -> list[str]:
    """Check every `resources: {limits, requests}` block anywhere in the manifest (containers, autoscaler)."""
    errors = []
    if isinstance(node, dict):
        if path and path[-1] == "resources" and ("limits" in node or "requests" in node):
            errors += _resource_block_errors(node, path)
        for key, value in node.items():
            errors += _quantity_errors(value, path + [key])
    elif isinstance(node, list):
        for i, value in enumerate(node):
            errors += _quantity_errors(value, path + [i])
    return errors


def _is_extended(resource: str) -> bool:
    """Extended resources (nvidia.com/gpu, amd.com/gpu, ...) are whole counts that cannot be overcommitted."""
    return "/" in resource and not resource.split("/", 1)[0].endswith("kubernetes.io")


def _resource_block_errors(block: dict, path: list) -> list[str]:
    errors = []
    for part in ("limits", "requests"):
        values = block.get(part)
        if not isinstance(values, dict):
            continue
        for resource, value in values.items():
            where = format_path(path + [part, resource])
            if not is_quantity(value):
                errors.append(f"{where}: {value!r} is not a Kubernetes quantity (e.g. 1, \"500m\", \"32Gi\")")
            elif str(value).startswith("-"):
                errors.append(f"{where}: {value!r} is negative")
            elif _is_extended(resource) and not re.fullmatch(r"\+?\d+", str(value)):
                errors.append(f"{where}: {value!r}; {resource} must be a whole number")
    limits, requests = block.get("limits"), block.get("requests")
    if isinstance(requests, dict):
        for resource in sorted(r for r in requests if _is_extended(r)):
            if not isinstance(limits, dict) or resource not in limits:
                errors.append(
                    f"{format_path(path + ['limits', resource])}: missing; {resource} requested but not limited "
                    "(extended resources must appear in limits)"
                )
    if isinstance(limits, dict) and isinstance(requests, dict):
        for resource in sorted(set(limits) & set(requests)):
            lim, req = limits[resource], requests[resource]
            if not (_is_extended(resource) and is_quantity(lim) and is_quantity(req)):
                continue
            if str(lim).lstrip("+") != str(req).lstrip("+"):
                errors.append(
                    f"{format_path(path + ['requests', resource])}: {requests[resource]!r} differs from the limit "
                    f"{limits[resource]!r}; extended resources need requests equal to limits"
                )
    return errors


def main(argv: list[str] | None = None) -> int:
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        sys.stderr.write("usage: python cluster/validate.py MANIFEST.yaml [...]\n")
        return 2
    bad = 0
    for path in paths:
        try:
            errors = validate_file(path)
        except UsageError as exc:
            sys.stderr.write(f"{path}: {exc}\n")
            return 2
        for e in errors:
            sys.stdout.write(f"{path}: {e}\n")
        bad += bool(errors)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
