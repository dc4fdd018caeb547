"""Experiment config (YAML) -> validated, typed objects. Every error names the field, the bad value and what is allowed.

Each entry of ``sources`` becomes its source kind's own typed spec (``genbench.sources.<kind>``): a key that belongs
to another kind (``steps:`` on an original source) is refused, naming the kind it belongs to. Defaults live in those
spec types, once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from genbench import validate
from genbench.catalog import dataset_names
from genbench.errors import UsageError
from genbench.metrics import registry as metric_registry
from genbench.models import refs
from genbench.sources import registry as source_registry
from genbench.sources.base import SourceSpec

VERIFY = ("sha256", "size")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Keys that hold credentials, matched case-insensitively anywhere in storage_options (nested mappings included).
_SECRET_WORDS = ("secret", "password", "passwd", "token", "credential", "private")
_SECRET_KEYS = ("key", "access_key", "api_key", "account_key", "sas")


@dataclass(frozen=True)
class Pricing:
    """Hourly prices: generation's GPU instance and retrieval's CPU instance (the paper's Table 1 instances)."""

    instance: str = "1x NVIDIA A100 (Azure NC24ads A100 v4, spot: the paper's rate)"
    usd_per_hour: float = 1.47
    gpus_per_instance: int = 1
    cpu_instance: str = "32 vCPU (Azure E32ads v5, the paper's retrieval rate)"
    cpu_usd_per_hour: float = 0.21
    cpus_per_instance: int = 32
    # Original data is priced as the paper prices it: what a human labeller charges per image (Table 1's 1.2e-2 USD,
    # from Amazon SageMaker Ground Truth's price list), not what copying the file costs.
    labelling_usd_per_image: float = 1.2e-2


@dataclass(frozen=True)
class EngineConfig:
    workers: int | None = None  # None = one per GPU, else up to 2 CPU workers
    max_in_flight: int = 2
    max_retries: int = 2
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    verify: str = "sha256"
    on_locked: str = "fail"  # another run is writing a collection: fail (exit 2) or wait for it
    lock_wait_s: float = 3600.0


@dataclass(frozen=True)
class SourceEntry:
    """One ``sources`` entry: its kind, the ``module:Class`` that implements it, and its typed spec."""

    kind: str
    ref: str
    spec: SourceSpec

    @property
    def shots(self) -> tuple[int, ...]:
        return self.spec.shots


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    datasets: tuple[str, ...]
    sources: tuple[SourceEntry, ...]
    clip: str | None = "ViT-B-32:openai"
    seed: int = 0
    shard_size: int = 1000
    data_root: str | None = None
    cache_dir: str | None = None
    metrics: tuple[str, ...] = metric_registry.DEFAULT
    engine: EngineConfig = EngineConfig()
    pricing: Pricing = Pricing()
    out: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    inception_weights: str | None = None  # local safetensors file of Inception-v3, needed by metrics: [fid]
    # A test split whose size differs from the catalog's is refused unless this says it is a known subset.
    accept_test_subset: bool = False
    finetune: Any = None  # genbench.finetune.settings.FinetunePlan: CLIP fine-tuned on the collections (Fig. 10)

    @property
    def clip_slug(self) -> str | None:
        """The name of the run's CLIP sidecars, ``emb/<slug>/`` (None without a CLIP model)."""
        return refs.clip_slug(self.clip) if self.clip else None


INCEPTION_ALLOWED = ("an existing local .safetensors file of Inception-v3 weights (torchvision's inception_v3 "
                     "state dict saved with safetensors.torch.save_file; nothing is downloaded)")
# What each config field a metric requires (Metric.requires) must hold.
REQUIRED_FILES = {"inception_weights": INCEPTION_ALLOWED}


def input_problems(cfg: ExperimentConfig) -> list[UsageError]:
    """The local files the config names or its metrics require (``Metric.requires`` names config fields, e.g. FID's
    ``inception_weights``) that are unset or absent, one error each; empty when a run can start."""
    problems = [UsageError(key, getattr(cfg, key), allowed) for key, allowed in REQUIRED_FILES.items()
                if getattr(cfg, key) and not os.path.isfile(getattr(cfg, key))]
    for name in cfg.metrics:
        for need in metric_registry.get(name).requires:
            if not getattr(cfg, need, None):
                allowed = REQUIRED_FILES.get(need, "an existing local file")
                problems.append(UsageError("metrics", name, f"{name} only with {need}: {allowed}"))
    return problems


def check_clip_weights(cfg: ExperimentConfig) -> None:
    """The run's CLIP weights are on disk, in the local Hugging Face cache, or downloadable now (the hub answers)."""
    refs.check_clip_weights(cfg.clip, cfg.cache_dir)


def check_inputs(cfg: ExperimentConfig) -> None:
    """Refuse (exit 2) a config whose required local files are missing; called before a run writes anything."""
    problems = input_problems(cfg)
    if problems:
        raise problems[0]


def parse_source(data: Any, where: str, datasets: tuple[str, ...]) -> SourceEntry:
    if not isinstance(data, dict):
        raise UsageError(where, data, "a mapping with at least 'source' and 'shots'")
    ref = source_registry.resolve(data.get("source"), f"{where}.source")
    source = source_registry.load(ref, f"{where}.source")
    return SourceEntry(source.kind, ref, source.spec_type.parse(data, where, source.kind, datasets))


def _secret(key: str) -> bool:
    k = key.lower().replace("-", "_")
    return any(w in k for w in _SECRET_WORDS) or k in _SECRET_KEYS or k.endswith(("_secret_access_key", "_key_secret"))


def parse_storage_options(value: Any, where: str = "storage_options", depth: int = 0) -> dict[str, Any]:
    """fsspec options for the output, index and collections (e.g. ``endpoint_url``); never credentials. A value under
    a credential-looking key is refused without being shown."""
    if not isinstance(value, dict) or len(value) > 50 or depth > 3:
        raise UsageError(where, "<mapping>" if isinstance(value, dict) else value,
                         "a mapping of fsspec options (e.g. endpoint_url), at most 50 keys and 3 levels deep")
    for key, v in value.items():
        if not isinstance(key, str) or _secret(key):
            raise UsageError(f"{where}.{key}", "<hidden>",
                             "credentials from the environment (AWS_ACCESS_KEY_ID, ...), never in a config or argument")
        if isinstance(v, dict):
            parse_storage_options(v, f"{where}.{key}", depth + 1)
        elif not isinstance(v, (str, int, float, bool)) and v is not None:
            raise UsageError(f"{where}.{key}", type(v).__name__, "a string, number, boolean or mapping")
    return dict(value)


def parse_config(data: Any, where: str = "config") -> ExperimentConfig:
    if not isinstance(data, dict):
        raise UsageError(where, type(data).__name__, "a YAML mapping at the top level")
    validate.keys(data, {f.name for f in fields(ExperimentConfig)}, "")
    name = data.get("name", "experiment")
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError("name", name, "a name of letters, digits, '.', '_' or '-' (at most 100, not a path)")
    ds = data.get("datasets")
    if isinstance(ds, str):
        ds = [ds]
    if not isinstance(ds, list) or not ds or len(ds) > len(dataset_names()):
        raise UsageError("datasets", ds, "a non-empty list of catalog dataset names (`genbench datasets` lists them)")
    for i, d in enumerate(ds):
        validate.choice(d, f"datasets[{i}]", dataset_names(), "`genbench datasets`")
    datasets = tuple(dict.fromkeys(ds))
    srcs = data.get("sources")
    if not isinstance(srcs, list) or not srcs or len(srcs) > 100:
        raise UsageError("sources", srcs, "a non-empty list of sources: " + ", ".join(source_registry.known_kinds()))
    sources = tuple(parse_source(s, f"sources[{i}]", datasets) for i, s in enumerate(srcs))
    kw: dict[str, Any] = {"name": name, "datasets": datasets, "sources": sources}
    if "clip" in data:
        clip = data["clip"]
        kw["clip"] = None if clip in (None, "none") else validate.text(clip, "clip", refs.ALLOWED_CLIP)
    if kw.get("clip", ExperimentConfig.clip):
        refs.check_clip(kw.get("clip", ExperimentConfig.clip))
    if "seed" in data:
        kw["seed"] = validate.integer(data["seed"], "seed", 0, 2**31 - 1)
    if "shard_size" in data:
        kw["shard_size"] = validate.integer(data["shard_size"], "shard_size", 1, 1_000_000)
    for key in ("data_root", "cache_dir", "out"):
        if data.get(key) is not None:
            kw[key] = validate.text(data[key], key, "a path or URL string")
    if "metrics" in data:
        kw["metrics"] = metric_registry.parse(data["metrics"])
    if data.get("inception_weights") is not None:
        # Only the form here: a shipped config names a file each user puts in place, so whether it exists is
        # checked before a run writes anything (check_inputs) and listed by `genbench plan`, not at parse time.
        path = data["inception_weights"]
        if not isinstance(path, str) or "\x00" in path or not path.endswith(".safetensors"):
            raise UsageError("inception_weights", path, INCEPTION_ALLOWED)
        kw["inception_weights"] = path
    if "storage_options" in data:
        kw["storage_options"] = parse_storage_options(data["storage_options"])
    if "accept_test_subset" in data:
        kw["accept_test_subset"] = validate.flag(data["accept_test_subset"], "accept_test_subset")
    if "engine" in data:
        kw["engine"] = _parse_engine(data["engine"])
    if "pricing" in data:
        kw["pricing"] = _parse_pricing(data["pricing"])
    if data.get("finetune") is not None:
        from genbench.finetune.settings import parse_finetune

        kw["finetune"] = parse_finetune(data["finetune"], tuple(source_registry.known_kinds()))
    return ExperimentConfig(**kw)


def _parse_engine(data: Any) -> EngineConfig:
    if not isinstance(data, dict):
        raise UsageError("engine", data, "a mapping")
    validate.keys(data, {f.name for f in fields(EngineConfig)}, "engine.")
    kw: dict[str, Any] = {}
    if data.get("workers") not in (None, "auto"):
        kw["workers"] = validate.integer(data["workers"], "engine.workers", 1, 10_000)
    if "max_in_flight" in data:
        kw["max_in_flight"] = validate.integer(data["max_in_flight"], "engine.max_in_flight", 1, 64)
    if "max_retries" in data:
        kw["max_retries"] = validate.integer(data["max_retries"], "engine.max_retries", 0, 100)
    if data.get("gpus_per_worker") is not None:
        kw["gpus_per_worker"] = validate.number(data["gpus_per_worker"], "engine.gpus_per_worker", 0.0, 64.0)
    if "cpus_per_worker" in data:
        kw["cpus_per_worker"] = validate.number(data["cpus_per_worker"], "engine.cpus_per_worker", 0.0, 1024.0, lo_open=True)
    if "verify" in data:
        kw["verify"] = validate.choice(data["verify"], "engine.verify", VERIFY)
    if "on_locked" in data:
        kw["on_locked"] = validate.choice(data["on_locked"], "engine.on_locked", ("fail", "wait"))
    if "lock_wait_s" in data:
        kw["lock_wait_s"] = validate.number(data["lock_wait_s"], "engine.lock_wait_s", 0.0, 7 * 24 * 3600.0)
    return EngineConfig(**kw)


def _parse_pricing(data: Any) -> Pricing:
    if not isinstance(data, dict):
        raise UsageError("pricing", data, "a mapping with " + ", ".join(f.name for f in fields(Pricing)))
    validate.keys(data, {f.name for f in fields(Pricing)}, "pricing.")
    kw: dict[str, Any] = {}
    for key in ("instance", "cpu_instance"):
        if key in data:
            kw[key] = validate.text(data[key], f"pricing.{key}", "a short description of the instance", 200)
    for key in ("usd_per_hour", "cpu_usd_per_hour"):
        if key in data:
            kw[key] = validate.number(data[key], f"pricing.{key}", 0.0, 10_000.0)
    if "labelling_usd_per_image" in data:
        kw["labelling_usd_per_image"] = validate.number(data["labelling_usd_per_image"],
                                                        "pricing.labelling_usd_per_image", 0.0, 1_000.0)
    for key in ("gpus_per_instance", "cpus_per_instance"):
        if key in data:
            kw[key] = validate.integer(data[key], f"pricing.{key}", 1, 1024)
    return Pricing(**kw)


MAX_CONFIG_BYTES = 1 << 20


class _Alias(yaml.YAMLError):
    def __init__(self, mark: Any):
        super().__init__("alias")
        self.problem, self.problem_mark = "aliases (*name) are not allowed: write the value out", mark


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without aliases: a few bytes of nested aliases expand into gigabytes (a 'billion laughs')."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _Alias(self.peek_event().start_mark)
        return super().compose_node(parent, index)


def load_config(path: str) -> ExperimentConfig:
    """Read and validate a YAML config file."""
    if not os.path.isfile(path):
        raise UsageError("config", path, "an existing YAML file")
    if os.path.getsize(path) > MAX_CONFIG_BYTES:
        raise UsageError("config", path, f"a YAML file of at most {MAX_CONFIG_BYTES} bytes")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise UsageError("config", path, "a UTF-8 text file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UsageError("config", path, f"valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data)
