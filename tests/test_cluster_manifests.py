"""The KubeRay manifests in cluster/ against the real CRD schemas and KubeRay's own rules, and the container pins."""

from __future__ import annotations

import copy
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "cluster"


def _import_validator():
    """cluster/validate.py is operator tooling, not part of the library: load it from its file."""
    spec = importlib.util.spec_from_file_location("cluster_validate", CLUSTER / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validator = _import_validator()
UsageError = validator.UsageError
CRD_DIR = validator.default_crd_dir()


def _manifest_files() -> list[Path]:
    """Files in cluster/ that are Kubernetes objects (runtime-env.yaml is a Ray runtime env, not a manifest)."""
    out = []
    for path in sorted(CLUSTER.glob("*.yaml")):
        docs = list(yaml.safe_load_all(path.read_text()))
        if any(isinstance(d, dict) and "apiVersion" in d for d in docs):
            out.append(path)
    return out


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def _pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(_parse_pin(d) for d in deps)


def _parse_pin(requirement: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)\s*", requirement)
    assert m, f"not an exact pin: {requirement!r}"
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(3)


def _gpu_container(doc: dict) -> dict:
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    group = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu-workers")
    return group["template"]["spec"]["containers"][0]


def _pod_templates(doc: dict) -> list[dict]:
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


# ---- the shipped manifests -------------------------------------------------------------------------------------


def test_cluster_dir_ships_a_raycluster_and_a_rayjob():
    kinds = sorted(yaml.safe_load(p.read_text())["kind"] for p in _manifest_files())
    assert kinds == ["RayCluster", "RayJob"]


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: p.name)
def test_every_manifest_validates(path):
    assert validator.validate_file(path) == []


def test_head_schedules_no_work_and_serves_the_dashboard():
    head = _load("raycluster.yaml")["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_gpu_workers_request_and_limit_one_gpu_with_toleration_and_bounds(name):
    doc = _load(name)
    res = _gpu_container(doc)["resources"]
    assert res["limits"]["nvidia.com/gpu"] == 1 and res["requests"]["nvidia.com/gpu"] == 1
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    group = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu-workers")
    tolerations = group["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]


def test_rayjob_embeds_the_same_cluster_as_raycluster_yaml():
    assert _load("rayjob.yaml")["spec"]["rayClusterSpec"] == _load("raycluster.yaml")["spec"]


def test_rayjob_entrypoint_lifecycle_and_runtime_env():
    spec = _load("rayjob.yaml")["spec"]
    assert re.fullmatch(r"python ray_jobs/run\.py configs/[\w.-]+\.yaml --out (s3://|/)\S+", spec["entrypoint"])
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert env["working_dir"] and env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    # The laptop submission path and the RayJob must run with the same environment.
    assert env["env_vars"] == yaml.safe_load((CLUSTER / "runtime-env.yaml").read_text())["env_vars"]
    secretish = re.compile(r"(^|_)(SECRET|PASSWORD|TOKEN|ACCESS_KEY)(_|$)", re.I)
    assert not [k for k in env["env_vars"] if secretish.search(k)], "runtime envs are visible in the dashboard"


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_credentials_come_from_a_secret(name):
    for template in _pod_templates(_load(name)):
        for container in template["spec"]["containers"]:
            aws = [e for e in container.get("env", []) if e["name"].startswith("AWS_")]
            assert aws, f"{container['name']} has no S3 credentials"
            for e in aws:
                assert "value" not in e and "secretKeyRef" in e["valueFrom"], e["name"]


def test_images_are_the_pinned_tag_of_our_recipe():
    pins = _pyproject_pins()
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    images = set()
    for name in ("raycluster.yaml", "rayjob.yaml"):
        doc = _load(name)
        spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
        assert spec["rayVersion"] == pins["ray"]
        images |= {c["image"] for t in _pod_templates(doc) for c in t["spec"]["containers"]}
    assert len(images) == 1
    (image,) = images
    assert image.split(":")[-1].startswith(f"{version}-ray{pins['ray']}-py311-")


# ---- the container recipe ------------------------------------------------------------------------------------


def test_dockerfile_base_is_cuda_ray_image_matching_the_ray_pin():
    text = (CLUSTER / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, re.M)
    m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d+)-cu(\d+)", base)
    assert m, base
    assert m.group(1) == _pyproject_pins()["ray"] and m.group(2) == "311"


def test_every_container_pin_equals_pyproject():
    pins = _pyproject_pins()
    found: dict[str, str] = {}
    for name in ("Dockerfile", "requirements.txt"):
        for line in (CLUSTER / name).read_text().splitlines():
            line = line.split("#", 1)[0]
            for token in re.findall(r"[A-Za-z0-9_.\[\],-]+==[^\s\"'\\]+", line):
                pkg, ver = _parse_pin(token)
                assert pins.get(pkg) == ver, f"{name}: {token} but pyproject pins {pkg}=={pins.get(pkg)}"
                found[pkg] = ver
    # Complete as well as equal: every runtime dependency is installed at its pinned version.
    assert found == pins


# ---- broken copies fail, naming the field --------------------------------------------------------------------


def _gpu_as_word(doc):
    _gpu_container(doc)["resources"]["limits"]["nvidia.com/gpu"] = "one"


def _long_name(doc):
    doc["metadata"]["name"] = "genbench-" + "x" * 51  # 60 characters


def _underscore_name(doc):
    doc["metadata"]["name"] = "genbench_quickstart"


def _ttl_without_shutdown(doc):
    doc["spec"]["shutdownAfterJobFinishes"] = False


def _unknown_spec_field(doc):
    doc["spec"]["shutdownAfterJobFinish"] = True  # a typo the API server would otherwise prune silently


def _fractional_gpu(doc):
    res = _gpu_container(doc)["resources"]
    res["limits"]["nvidia.com/gpu"] = res["requests"]["nvidia.com/gpu"] = "500m"


def _gpu_requests_differ(doc):
    _gpu_container(doc)["resources"]["requests"]["nvidia.com/gpu"] = 2


def _num_cpus_as_int(doc):
    doc["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0


def _min_above_max(doc):
    doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplicas"] = 9


def _bad_runtime_env(doc):
    doc["spec"]["runtimeEnvYAML"] = "- just\n- a list\n"


def _no_head_container(doc):
    doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"] = []


def _duplicate_group(doc):
    groups = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    groups.append(copy.deepcopy(groups[0]))


def _resources_twice(doc):
    doc["spec"]["rayClusterSpec"]["headGroupSpec"]["resources"] = {"CPU": "1"}  # head also has num-cpus "0"


BROKEN = {
    "gpu-as-word": (_gpu_as_word, ['limits["nvidia.com/gpu"]', "'one'"]),
    "60-char-name": (_long_name, ["metadata.name", "60 characters", "47"]),
    "underscore-name": (_underscore_name, ["metadata.name", "DNS-1035"]),
    "ttl-without-shutdown": (_ttl_without_shutdown, ["spec.ttlSecondsAfterFinished", "shutdownAfterJobFinishes"]),
    "unknown-spec-field": (_unknown_spec_field, ["spec.shutdownAfterJobFinish:", "unknown field"]),
    "fractional-gpu": (_fractional_gpu, ['limits["nvidia.com/gpu"]', "whole number"]),
    "gpu-requests-differ": (_gpu_requests_differ, ['requests["nvidia.com/gpu"]', "equal to limits"]),
    "num-cpus-int": (_num_cpus_as_int, ["rayStartParams.num-cpus", "string"]),
    "min-above-max": (_min_above_max, ["workerGroupSpecs[0].minReplicas", "maxReplicas"]),
    "runtime-env-not-mapping": (_bad_runtime_env, ["spec.runtimeEnvYAML", "mapping"]),
    "no-head-container": (_no_head_container, ["headGroupSpec.template.spec.containers", "at least one"]),
    "duplicate-worker-group": (_duplicate_group, ["workerGroupSpecs[1].groupName", "duplicate"]),
    "resources-twice": (_resources_twice, ["headGroupSpec.resources", "rayStartParams"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_rayjob_fails_naming_the_field(case):
    breaker, needles = BROKEN[case]
    doc = _load("rayjob.yaml")
    assert validator.validate_manifest(doc) == []
    breaker(doc)
    errors = validator.validate_manifest(doc)
    assert errors, f"{case} passed validation"
    assert any(all(n in e for n in needles) for e in errors), errors


def test_raycluster_name_limit_is_63_not_47():
    doc = _load("raycluster.yaml")
    doc["metadata"]["name"] = "g" * 63
    assert validator.validate_manifest(doc) == []
    doc["metadata"]["name"] = "g" * 64
    assert any(e.startswith("metadata.name:") and "63" in e for e in validator.validate_manifest(doc))


def test_rayjob_name_of_exactly_47_passes():
    doc = _load("rayjob.yaml")
    doc["metadata"]["name"] = "j" * 47
    assert validator.validate_manifest(doc) == []


def test_quantity_strings_are_accepted_where_k8s_accepts_them():
    doc = _load("raycluster.yaml")
    res = _gpu_container(doc)["resources"]
    res["limits"]["nvidia.com/gpu"] = res["requests"]["nvidia.com/gpu"] = "1"
    res["limits"]["memory"] = res["requests"]["memory"] = "51539607552"
    res["limits"]["cpu"] = res["requests"]["cpu"] = "7500m"
    assert validator.validate_manifest(doc) == []


@pytest.mark.parametrize(
    "value, ok",
    [(1, True), ("1", True), ("500m", True), ("32Gi", True), ("1e3", True), ("+2", True),
     ("one", False), ("1.2.3", False), ("32GB", False), ("", False), (True, False), (1.5, False)],
)
def test_is_quantity(value, ok):
    assert validator.is_quantity(value) is ok


def test_wrong_kind_and_api_version_are_named():
    doc = _load("raycluster.yaml")
    assert validator.validate_manifest({**doc, "kind": "Deployment"})[0].startswith("kind:")
    errors = validator.validate_manifest({**doc, "apiVersion": "ray.io/v1alpha1"})
    assert any(e.startswith("apiVersion:") for e in errors)


# ---- files and the CRD directory -----------------------------------------------------------------------------


def test_validate_file_prefixes_documents_of_a_multi_document_file(tmp_path):
    good = _load("raycluster.yaml")
    bad = copy.deepcopy(good)
    bad["metadata"]["name"] = "Bad_Name"
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([good, bad]))
    errors = validator.validate_file(path)
    assert errors and all(e.startswith("doc 1: metadata.name:") for e in errors)


def test_validate_file_missing_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as exc:
        validator.validate_file(tmp_path / "nope.yaml")
    assert exc.value.field == "path"


def test_crd_dir_comes_from_the_environment(tmp_path, monkeypatch):
    for name in validator.CRD_FILES.values():
        (tmp_path / name).symlink_to(CRD_DIR / name)
    monkeypatch.setenv(validator.CRD_ENV, str(tmp_path))
    assert validator.default_crd_dir() == tmp_path
    assert validator.validate_manifest(_load("rayjob.yaml")) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(validator.CRD_ENV, str(empty))
    with pytest.raises(UsageError) as exc:
        validator.validate_manifest(_load("rayjob.yaml"))
    assert exc.value.field == "crd_dir"


def test_crds_ship_with_the_repository_and_the_validator_runs_as_a_script():
    assert CRD_DIR == CLUSTER / "crds" and all((CRD_DIR / f).is_file() for f in validator.CRD_FILES.values())
    files = [str(p) for p in _manifest_files()]
    ok = subprocess.run([sys.executable, str(CLUSTER / "validate.py"), *files], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
