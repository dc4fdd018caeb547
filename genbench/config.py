"""Experiment config (YAML) -> validated, typed objects. Every error names the field, the bad value and what is allowed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from genbench.catalog import dataset_names
from genbench.errors import UsageError

SOURCES = ("generated", "original", "retrieved")
SCORE_METRICS = ("zeroshot", "cler", "cler_text", "linear_probe", "clip_score", "fd_clip", "fid")
DEFAULT_METRICS = ("zeroshot", "cler", "cler_text")
IMAGE_FORMATS = ("jpg", "png", "webp")
VERIFY = ("sha256", "size")


def _strategies() -> tuple[str, ...]:
    from genbench.prompts import STRATEGIES

    return tuple(STRATEGIES)


def _check_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise UsageError(f"{where}{key}", data[key], "known keys: " + ", ".join(sorted(allowed)))


def _int(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(where, value, f"an integer >= {minimum}")
    return value


def _num(value: Any, where: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise UsageError(where, value, f"a number >= {minimum}")
    return float(value)


def parse_shots(value: Any, where: str) -> tuple[int, ...]:
    """An int or a list of ints, each >= 1; returned sorted and unique (prefixes of one collection)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise UsageError(where, value, "an integer >= 1 or a non-empty list of them")
    return tuple(sorted({_int(v, where) for v in items}))


@dataclass(frozen=True)
class Pricing:
    instance: str = "1x NVIDIA A100 (on demand, paper's rate)"
    usd_per_hour: float = 1.47
    gpus_per_instance: int = 1


@dataclass(frozen=True)
class EngineConfig:
    workers: int | None = None  # None = one per GPU, else up to 2 CPU workers
    max_in_flight: int = 2
    max_retries: int = 2
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    verify: str = "sha256"


@dataclass(frozen=True)
class SourceConfig:
    source: str
    shots: tuple[int, ...]
    generator: str | None = None
    strategies: tuple[str, ...] = ()
    per_dataset: dict[str, tuple[str, ...]] = field(default_factory=dict)
    steps: int = 25
    guidance_scale: float = 7.5
    batch_size: int = 8
    resolution: int | None = None
    image_size: int | None = None
    image_format: str = "jpg"
    jpeg_quality: int = 95
    dtype: str | None = None
    scheduler: str = "dpmsolver++"
    compile: bool = False
    ce_model: str = "mrm8488/t5-base-finetuned-common_gen"
    tig_strength: float = 0.75
    tig_shots: int = 16
    index: str | None = None
    oversample: float = 3.0
    allow_addresses: tuple[str, ...] = ()

    def strategies_for(self, dataset: str) -> tuple[str, ...]:
        return self.per_dataset.get(dataset, self.strategies)

    def generation_options(self, strategy: str) -> dict[str, Any]:
        """The options that decide a generated sample's bytes (part of the collection identity)."""
        opts = {
            "generator": self.generator,
            "strategy": strategy,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "batch_size": self.batch_size,
            "resolution": self.resolution,
            "image_size": self.image_size,
            "image_format": self.image_format,
            "jpeg_quality": self.jpeg_quality,
            "dtype": self.dtype,
            "scheduler": self.scheduler,
            "compile": self.compile,
        }
        if strategy == "ce":
            opts["ce_model"] = self.ce_model
        if strategy == "tig":
            opts.update(tig_strength=self.tig_strength, tig_shots=self.tig_shots)
        return opts


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    datasets: tuple[str, ...]
    sources: tuple[SourceConfig, ...]
    clip: str = "ViT-B-32:openai"
    seed: int = 0
    shard_size: int = 1000
    data_root: str | None = None
    cache_dir: str | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    engine: EngineConfig = EngineConfig()
    pricing: Pricing = Pricing()
    out: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    inception_weights: str | None = None  # local safetensors file of Inception-v3, needed by metrics: [fid]


def _parse_source(data: Any, where: str, datasets: tuple[str, ...]) -> SourceConfig:
    if not isinstance(data, dict):
        raise UsageError(where, data, "a mapping with at least 'source' and 'shots'")
    allowed = {f.name for f in fields(SourceConfig)}
    _check_keys(data, allowed, f"{where}.")
    src = data.get("source")
    if src not in SOURCES:
        raise UsageError(f"{where}.source", src, SOURCES)
    if "shots" not in data:
        raise UsageError(f"{where}.shots", None, "an integer >= 1 or a list of them (required)")
    kw: dict[str, Any] = {"source": src, "shots": parse_shots(data["shots"], f"{where}.shots")}
    if src == "generated":
        gen = data.get("generator")
        if not isinstance(gen, str) or not gen:
            raise UsageError(f"{where}.generator", gen, "a model reference: 'tiny', 'null', a hub id or a local directory")
        kw["generator"] = gen
        kw["strategies"] = _parse_strategies(data.get("strategies", ["st"]), f"{where}.strategies")
        per = data.get("per_dataset", {}) or {}
        if not isinstance(per, dict):
            raise UsageError(f"{where}.per_dataset", per, "a mapping dataset -> list of strategies")
        parsed = {}
        for ds, strat in per.items():
            if ds not in datasets:
                raise UsageError(f"{where}.per_dataset.{ds}", ds, "a dataset listed in 'datasets'")
            parsed[ds] = _parse_strategies(strat, f"{where}.per_dataset.{ds}")
        kw["per_dataset"] = parsed
    for key in ("steps", "batch_size", "jpeg_quality", "tig_shots"):
        if key in data:
            kw[key] = _int(data[key], f"{where}.{key}")
    if kw.get("jpeg_quality", 95) > 100:
        raise UsageError(f"{where}.jpeg_quality", kw["jpeg_quality"], "an integer from 1 to 100")
    for key in ("resolution", "image_size"):
        if data.get(key) is not None:
            v = _int(data[key], f"{where}.{key}", 8)
            if key == "resolution" and v % 8:
                raise UsageError(f"{where}.{key}", v, "a multiple of 8 (the VAE downsamples by 8)")
            kw[key] = v
    if "guidance_scale" in data:
        kw["guidance_scale"] = _num(data["guidance_scale"], f"{where}.guidance_scale")
    if "tig_strength" in data:
        v = _num(data["tig_strength"], f"{where}.tig_strength")
        if not 0 < v <= 1:
            raise UsageError(f"{where}.tig_strength", v, "a number in (0, 1]: the share of the denoising steps img2img runs")
        kw["tig_strength"] = v
    if "oversample" in data:
        kw["oversample"] = _num(data["oversample"], f"{where}.oversample", 1.0)
    if "image_format" in data:
        if data["image_format"] not in IMAGE_FORMATS:
            raise UsageError(f"{where}.image_format", data["image_format"], IMAGE_FORMATS)
        kw["image_format"] = data["image_format"]
    elif src == "original":
        kw["image_format"] = "png"  # originals are real images: keep their pixels exactly
    if "dtype" in data:
        if data["dtype"] not in (None, "bf16", "fp16", "fp32"):
            raise UsageError(f"{where}.dtype", data["dtype"], ("bf16", "fp16", "fp32"))
        kw["dtype"] = data["dtype"]
    for key in ("scheduler", "ce_model", "index"):
        if key in data:
            if not isinstance(data[key], str):
                raise UsageError(f"{where}.{key}", data[key], "a string")
            kw[key] = data[key]
    if kw.get("scheduler", "dpmsolver++") not in ("dpmsolver++", "default"):
        raise UsageError(f"{where}.scheduler", kw["scheduler"], ("dpmsolver++", "default"))
    if "compile" in data:
        if not isinstance(data["compile"], bool):
            raise UsageError(f"{where}.compile", data["compile"], "true or false")
        kw["compile"] = data["compile"]
    if "allow_addresses" in data:
        import ipaddress

        items = data["allow_addresses"] or []
        items = [items] if isinstance(items, str) else items
        for j, cidr in enumerate(items):
            try:
                ipaddress.ip_network(str(cidr), strict=False)
            except ValueError:
                raise UsageError(f"{where}.allow_addresses[{j}]", cidr, "a CIDR network such as 127.0.0.0/8") from None
        kw["allow_addresses"] = tuple(str(a) for a in items)
    if src == "retrieved" and not kw.get("index"):
        raise UsageError(f"{where}.index", None, "the directory of a caption index built with `genbench index build`")
    return SourceConfig(**kw)


def _parse_strategies(value: Any, where: str) -> tuple[str, ...]:
    from genbench.prompts import parse_strategy

    items = value if isinstance(value, list) else [value]
    if not items:
        raise UsageError(where, value, "a non-empty list of strategies: " + ", ".join(_strategies()))
    out = []
    for i, s in enumerate(items):
        if not isinstance(s, str):
            raise UsageError(f"{where}[{i}]", s, _strategies())
        try:
            out.append(parse_strategy(s))
        except UsageError:
            raise UsageError(f"{where}[{i}]", s, _strategies()) from None
    return tuple(dict.fromkeys(out))


def parse_config(data: Any, where: str = "config") -> ExperimentConfig:
    if not isinstance(data, dict):
        raise UsageError(where, type(data).__name__, "a YAML mapping at the top level")
    allowed = {f.name for f in fields(ExperimentConfig)}
    _check_keys(data, allowed, "")
    name = data.get("name", "experiment")
    if not isinstance(name, str) or not name:
        raise UsageError("name", name, "a non-empty string")
    ds = data.get("datasets")
    if isinstance(ds, str):
        ds = [ds]
    if not isinstance(ds, list) or not ds:
        raise UsageError("datasets", ds, "a non-empty list of catalog datasets: " + ", ".join(dataset_names()))
    for i, d in enumerate(ds):
        if d not in dataset_names():
            raise UsageError(f"datasets[{i}]", d, dataset_names())
    datasets = tuple(dict.fromkeys(ds))
    srcs = data.get("sources")
    if not isinstance(srcs, list) or not srcs:
        raise UsageError("sources", srcs, "a non-empty list of sources (generated, original, retrieved)")
    sources = tuple(_parse_source(s, f"sources[{i}]", datasets) for i, s in enumerate(srcs))
    kw: dict[str, Any] = {"name": name, "datasets": datasets, "sources": sources}
    if "clip" in data:
        if not isinstance(data["clip"], str) or not data["clip"]:
            raise UsageError("clip", data["clip"], "a CLIP reference: 'tiny', 'ARCH:pretrained' (e.g. ViT-B-32:openai) or a local directory")
        kw["clip"] = data["clip"]
    if "seed" in data:
        kw["seed"] = _int(data["seed"], "seed", 0)
    if "shard_size" in data:
        kw["shard_size"] = _int(data["shard_size"], "shard_size")
    for key in ("data_root", "cache_dir", "out"):
        if data.get(key) is not None:
            if not isinstance(data[key], str):
                raise UsageError(key, data[key], "a path or URL string")
            kw[key] = data[key]
    if "metrics" in data:
        m = data["metrics"]
        if not isinstance(m, list) or not m:
            raise UsageError("metrics", m, "a non-empty list of: " + ", ".join(SCORE_METRICS))
        for i, x in enumerate(m):
            if x not in SCORE_METRICS:
                raise UsageError(f"metrics[{i}]", x, SCORE_METRICS)
        kw["metrics"] = tuple(dict.fromkeys(m))
    if data.get("inception_weights") is not None:
        path = data["inception_weights"]
        if not isinstance(path, str) or not os.path.isfile(path) or not path.endswith(".safetensors"):
            raise UsageError("inception_weights", path, "an existing local .safetensors file of Inception-v3 weights")
        kw["inception_weights"] = path
    if "fid" in kw.get("metrics", ()) and "inception_weights" not in kw:
        raise UsageError("metrics", "fid", "fid only with inception_weights: a local .safetensors file of Inception-v3 weights")
    if "storage_options" in data:
        so = data["storage_options"]
        if not isinstance(so, dict):
            raise UsageError("storage_options", so, "a mapping of fsspec options (e.g. endpoint_url)")
        for secret in ("secret", "key", "token", "password", "aws_secret_access_key"):
            if secret in so:
                raise UsageError(f"storage_options.{secret}", "<hidden>", "credentials from the environment (AWS_ACCESS_KEY_ID, ...), never in a config file")
        kw["storage_options"] = dict(so)
    if "engine" in data:
        kw["engine"] = _parse_engine(data["engine"])
    if "pricing" in data:
        kw["pricing"] = _parse_pricing(data["pricing"])
    return ExperimentConfig(**kw)


def _parse_engine(data: Any) -> EngineConfig:
    if not isinstance(data, dict):
        raise UsageError("engine", data, "a mapping")
    _check_keys(data, {f.name for f in fields(EngineConfig)}, "engine.")
    kw: dict[str, Any] = {}
    if data.get("workers") not in (None, "auto"):
        kw["workers"] = _int(data["workers"], "engine.workers")
    for key in ("max_in_flight",):
        if key in data:
            kw[key] = _int(data[key], f"engine.{key}")
    if "max_retries" in data:
        kw["max_retries"] = _int(data["max_retries"], "engine.max_retries", 0)
    if data.get("gpus_per_worker") is not None:
        kw["gpus_per_worker"] = _num(data["gpus_per_worker"], "engine.gpus_per_worker")
    if "cpus_per_worker" in data:
        kw["cpus_per_worker"] = _num(data["cpus_per_worker"], "engine.cpus_per_worker")
        if kw["cpus_per_worker"] <= 0:
            raise UsageError("engine.cpus_per_worker", data["cpus_per_worker"], "a number > 0")
    if "verify" in data:
        if data["verify"] not in VERIFY:
            raise UsageError("engine.verify", data["verify"], VERIFY)
        kw["verify"] = data["verify"]
    return EngineConfig(**kw)


def _parse_pricing(data: Any) -> Pricing:
    if not isinstance(data, dict):
        raise UsageError("pricing", data, "a mapping with instance, usd_per_hour, gpus_per_instance")
    _check_keys(data, {f.name for f in fields(Pricing)}, "pricing.")
    kw: dict[str, Any] = {}
    if "instance" in data:
        kw["instance"] = str(data["instance"])
    if "usd_per_hour" in data:
        kw["usd_per_hour"] = _num(data["usd_per_hour"], "pricing.usd_per_hour")
    if "gpus_per_instance" in data:
        kw["gpus_per_instance"] = _int(data["gpus_per_instance"], "pricing.gpus_per_instance")
    return Pricing(**kw)


def load_config(path: str) -> ExperimentConfig:
    """Read and validate a YAML config file."""
    if not os.path.isfile(path):
        raise UsageError("config", path, "an existing YAML file")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UsageError("config", path, f"valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data)
