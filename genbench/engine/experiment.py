"""One experiment config, end to end: plan collections, build their shards on the worker pool, embed the real test
split once (cached), score every collection at every requested shot count, write results.json and report.md."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from genbench import cost
from genbench.catalog import get_dataset
from genbench.catalog.loaders import load_split
from genbench.config import ExperimentConfig, SourceConfig
from genbench.engine import collections as coll
from genbench.engine.plan import CollectionJob
from genbench.errors import ShardFailures, UsageError
from genbench.shards.store import Store, join

log = logging.getLogger(__name__)

_KNOWN_SLUGS = {
    "stabilityai/stable-diffusion-2-1-base": "sd21-base",
    "stabilityai/stable-diffusion-2-1": "sd21",
    "stabilityai/stable-diffusion-xl-base-1.0": "sdxl-base",
    "runwayml/stable-diffusion-v1-5": "sd15",
}


def model_slug(ref: str) -> str:
    if ref in _KNOWN_SLUGS:
        return _KNOWN_SLUGS[ref]
    base = ref.rstrip("/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9.-]+", "-", base).strip("-").lower() or "model"


def variant_name(src: SourceConfig, strategy: str | None, seed: int) -> str:
    if src.source == "generated":
        return f"{model_slug(src.generator)}_{strategy.replace('+', '-')}_s{seed}"
    if src.source == "retrieved":
        return f"{model_slug(src.index or 'index')}_s{seed}"
    return f"kshot_s{seed}"


def is_tiny(ref: str | None) -> bool:
    return ref in ("tiny", "null")


@dataclass
class Planned:
    job: CollectionJob
    source: SourceConfig
    strategy: str | None


def check_out(out: str) -> None:
    if "://" not in out and os.path.exists(out) and not os.path.isdir(out):
        raise UsageError("out", out, "a directory (this path is a file)")


def plan_jobs(cfg: ExperimentConfig, shards_root: str) -> list[Planned]:
    """One collection job per (dataset, source, strategy). Local roots are made absolute: workers run elsewhere."""
    if "://" not in shards_root:
        shards_root = os.path.abspath(shards_root)
    planned: list[Planned] = []
    seen: dict[str, int] = {}
    for ds in cfg.datasets:
        spec = get_dataset(ds)
        for i, src in enumerate(cfg.sources):
            strategies = src.strategies_for(ds) if src.source == "generated" else (None,)
            for strat in strategies:
                variant = variant_name(src, strat, cfg.seed)
                if src.source == "generated":
                    options = src.generation_options(strat)
                elif src.source == "original":
                    options = {"image_format": src.image_format, "jpeg_quality": src.jpeg_quality}
                else:
                    index = src.index if "://" in src.index else os.path.abspath(src.index)
                    options = {"index": index, "image_format": src.image_format, "jpeg_quality": src.jpeg_quality,
                               "image_size": src.image_size, "oversample": src.oversample}
                job = CollectionJob(
                    dataset=ds,
                    source=src.source,
                    variant=variant,
                    uri=join(shards_root, ds, src.source, variant),
                    run_seed=cfg.seed,
                    num_classes=spec.num_classes,
                    shots=max(src.shots),
                    shard_size=cfg.shard_size,
                    clip=cfg.clip,
                    data_root=cfg.data_root,
                    cache_dir=cfg.cache_dir,
                    options=options,
                    storage_options=dict(cfg.storage_options),
                )
                if job.uri in seen:
                    raise UsageError(
                        f"sources[{i}]", src.source,
                        f"a source whose collection differs from sources[{seen[job.uri]}]'s ({variant}): put both shot "
                        "counts in one list (shots: [..]) instead of repeating the source",
                    )
                seen[job.uri] = i
                planned.append(Planned(job, src, strat))
    return planned


def check_data(cfg: ExperimentConfig) -> None:
    """Open every split the run needs before anything is written: a missing dataset fails here (exit code 2)."""
    for ds in cfg.datasets:
        spec = get_dataset(ds)
        load_split(spec, "test", cfg.data_root)
        if any(s.source == "original" or "tig" in s.strategies_for(ds) for s in cfg.sources):
            load_split(spec, "train", cfg.data_root)


def check_models(cfg: ExperimentConfig) -> None:
    """Resolve every generator reference before anything is written, so an unknown model is a usage error (exit 2).

    Under HF_HUB_OFFLINE a hub id must already be in the local Hugging Face cache, or workers would fail later.
    """
    from genbench.models.generator import _resolve_path

    for i, src in enumerate(cfg.sources):
        if src.source == "retrieved":
            import fsspec

            fs, root = fsspec.core.url_to_fs(src.index, **cfg.storage_options)
            if not fs.exists(f"{root.rstrip('/')}/index.json"):
                raise UsageError(f"sources[{i}].index", src.index, "a caption index directory written by `genbench index build`")
            continue
        if src.source != "generated" or src.generator in ("tiny", "null") or src.generator.startswith("random:"):
            continue  # built offline from shipped configs (random: names are checked by the loader)
        try:
            path, _ = _resolve_path(src.generator, cfg.cache_dir)
        except UsageError as exc:
            raise UsageError(f"sources[{i}].generator", src.generator, exc.allowed) from None
        if not os.path.isdir(path) and os.environ.get("HF_HUB_OFFLINE") == "1":
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(path, "model_index.json")
            if not isinstance(found, str):
                raise UsageError(
                    f"sources[{i}].generator", src.generator,
                    "a local diffusers directory, 'tiny', 'null', or a hub id already in the local Hugging Face cache "
                    "(HF_HUB_OFFLINE=1 forbids downloads)",
                )


def check_retrieval(cfg: ExperimentConfig, clip: Any) -> None:
    """Retrieval queries the caption index with the run's CLIP text encoder: both must exist and match (exit 2)."""
    import json

    import fsspec

    for i, src in enumerate(cfg.sources):
        if src.source != "retrieved":
            continue
        if clip is None:
            raise UsageError("clip", None, "a CLIP model: retrieval queries the caption index with its text encoder")
        fs, root = fsspec.core.url_to_fs(src.index, **cfg.storage_options)
        with fs.open(f"{root.rstrip('/')}/index.json", "r") as f:
            built_with = json.load(f)
        if built_with.get("clip_slug") != clip.slug:
            raise UsageError(f"sources[{i}].index", src.index,
                             f"an index built with the run's CLIP model {clip.ref!r} (this one: {built_with.get('clip')!r})")


def check_resources(cfg: ExperimentConfig) -> None:
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0))
    want = cfg.engine.gpus_per_worker
    if want and want > gpus:
        raise UsageError("engine.gpus_per_worker", want, f"at most the cluster's {gpus:g} GPU(s)")


def resolve_cache_dir(cache_dir: str | None) -> str:
    """The configured cache directory, absolute, else the models' default ($GENBENCH_CACHE or ~/.cache/genbench)."""
    from genbench.models.cache import default_cache_dir as models_cache

    return os.path.abspath(cache_dir) if cache_dir else models_cache()


def split_embedder(cfg_clip: str, data_root: str | None, cache_dir: str | None, pool: Any = None, chunk: int = 512,
                   clip: Any = None):
    """A function (dataset, split) -> embeddings computed in fixed chunks: on the workers if ``pool``, else in-process
    with the already loaded encoder ``clip``. Chunks are the same either way, so are the batches the model sees."""

    def compute(dataset: str, split_name: str, n: int) -> np.ndarray:
        starts = list(range(0, n, chunk))
        args = [(dataset, split_name, s, min(s + chunk, n), cfg_clip, data_root, cache_dir) for s in starts]
        if pool is None:
            split = load_split(get_dataset(dataset), split_name, data_root)
            parts = [clip.encode_images([split.image(i) for i in range(s, e)]) for _, _, s, e, *_ in args]
            return np.concatenate(parts) if parts else np.zeros((0, clip.dim), np.float32)
        parts: dict[int, np.ndarray] = {}
        items = [(f"{dataset}/{split_name}/{a[2]}", a) for a in args]
        outcome = pool.map("embed_split", items, lambda lbl, v: parts.__setitem__(int(lbl.rsplit("/", 1)[1]), v))
        if outcome.failed:
            raise ShardFailures(outcome.failed)
        return np.concatenate([parts[s] for s in starts])

    return compute


def split_embeddings(
    dataset: str, split_name: str, clip: Any, clip_ref: str, data_root: str | None, cache_dir: str, compute
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, labels) of a real split, from the cache or computed by ``compute`` (see :func:`split_embedder`)."""
    from genbench.embeddings import cache_key, cached_embeddings

    split = load_split(get_dataset(dataset), split_name, data_root)
    key = cache_key(dataset, split_name, split.fingerprint, clip_ref, clip.preprocess_id)
    emb, hit = cached_embeddings(cache_dir, key, lambda: compute(dataset, split_name, len(split)))
    log.info("%s %s embeddings %s (%s)", dataset, split_name, emb.shape, "cached" if hit else "computed")
    return emb, split.labels


def score_collection(
    spec: Any,
    metrics: tuple[str, ...],
    sums: np.ndarray,
    counts: np.ndarray,
    test_emb: np.ndarray,
    labels: np.ndarray,
    text_emb: np.ndarray,
    external: Callable[[], Any] | None = None,
    seed: int = 0,
    fid_images: Callable[[], tuple[Any, Any]] | None = None,
    inception_weights: str | None = None,
) -> dict[str, float]:
    """Every requested score. CLER needs only class sums; the probe, CLIP score and Fréchet distance read the
    external embeddings through ``external()`` (sidecars, never images)."""
    from genbench.metrics import cler as cler_mod
    from genbench.metrics import task, zeroshot

    scores: dict[str, float] = {}
    if external is not None and any(m in metrics for m in ("linear_probe", "clip_score", "fd_clip")):
        ext = external()
        if "linear_probe" in metrics:
            from genbench.metrics.probe import linear_probe

            train_y = ext.cls
            if spec.multilabel:
                # Each external sample was made for one class: one-hot targets, scored one-vs-rest on multi-hot test labels.
                train_y = np.eye(spec.num_classes, dtype=np.float32)[ext.cls]
            res = linear_probe(ext.emb, train_y, test_emb, labels, spec.num_classes, spec.metric,
                               multilabel=spec.multilabel, seed=seed)
            scores["linear_probe"] = res.score
            if res.missing_classes:
                log.warning("%s: linear probe: %d class(es) have no external data", spec.name, len(res.missing_classes))
        if "clip_score" in metrics and ext.prompt_similarity is not None and len(ext.prompt_similarity):
            scores["clip_score"] = float(np.mean(ext.prompt_similarity) * 100.0)
        if "fd_clip" in metrics:
            from genbench.metrics.frechet import frechet_distance_features

            scores["fd_clip"] = frechet_distance_features(ext.emb.astype(np.float64), test_emb.astype(np.float64))
    if "fid" in metrics and fid_images is not None and inception_weights:
        from genbench.metrics.frechet import inception_fid

        external_images, test_images = fid_images()  # streamed: images are never all held at once
        scores["fid"] = inception_fid(external_images, test_images, inception_weights)
    if "zeroshot" in metrics:
        scores["zeroshot"] = task.score(spec.metric, labels, zeroshot.zeroshot_logits(test_emb, text_emb))
    if "cler" in metrics or "cler_text" in metrics:
        cents = cler_mod.centroids(sums, counts, spec.classes)
        if "cler" in metrics:
            scores["cler"] = task.score(spec.metric, labels, cler_mod.cler_logits(test_emb, cents))
        if "cler_text" in metrics:
            scores["cler_text"] = task.score(spec.metric, labels, cler_mod.cler_text_logits(test_emb, cents, text_emb))
    return {k: round(float(v), 4) for k, v in scores.items()}


def _build(cfg: ExperimentConfig, planned: list[Planned], make_pool: Callable[[], Any], clip: Any, progress: bool):
    """Prepare every collection, run retrieval downloads (before the worker pool takes the CPUs/GPUs), then build.
    Returns (states, extras, pool); the caller closes the pool."""
    states = [coll.prepare(p.job, clip.slug if clip else None, cfg.engine.verify) for p in planned]
    retrieval: dict[str, dict[str, Any]] = {}
    for p, st in zip(planned, states):
        log.info("%s: %d shard(s) done, %d to make", st.job.uri, st.skipped, len(st.pending))
        if p.source.source == "retrieved":
            from genbench.engine import retrieve

            retrieval[st.job.uri] = retrieve.prepare_downloads(st, clip, p.source.allow_addresses, progress)
    pool = make_pool()
    try:
        wall = coll.build(states, pool, cfg.engine.max_in_flight, cfg.engine.max_retries, progress, cfg.pricing)
    except BaseException:
        pool.close()
        raise
    extras = {}
    for p, st in zip(planned, states):
        dev_s = sum(float(r.get("device_seconds", 0.0)) for r in st.records.values())
        n = sum(int(r.get("samples", 0)) for r in st.records.values())
        device = next((r.get("device", "cpu") for r in st.records.values()), "cpu")
        extras[st.job.uri] = {"cost": cost.cost_record(dev_s, n, device, cfg.pricing), "tiny_models": _tiny(cfg, p)}
        if st.job.uri in retrieval:
            r = retrieval[st.job.uri]
            fetch_cpu = r["fetch"]["cpu_seconds"]
            # Retrieval cost: measured CPU-seconds of fetching/decoding plus the shard stage's device-seconds.
            extras[st.job.uri].update(r)
            extras[st.job.uri]["cost"] = cost.cost_record(dev_s + fetch_cpu, n, device, cfg.pricing)
            extras[st.job.uri]["cost"]["fetch_cpu_seconds"] = fetch_cpu
    # Writes every manifest, then raises ShardFailures naming what stayed failed (committed shards are kept).
    try:
        coll.finish(states, extras)
    except BaseException:
        pool.close()
        raise
    log.info("built %d collection(s) in %.1fs", len(states), wall)
    return states, extras, pool


def build_collections(
    cfg: ExperimentConfig, shards_root: str, address: str | None = None, workers: int | None = None, progress: bool = True
) -> list[CollectionJob]:
    """Build (or complete) every collection of ``cfg`` under ``shards_root`` without scoring (generate/original)."""
    from genbench.engine.dispatch import WorkerPool, init_ray

    check_out(shards_root)
    planned = plan_jobs(cfg, shards_root)
    check_data(cfg)
    check_models(cfg)
    clip = None
    if cfg.clip and cfg.clip != "none":
        from genbench.models.clip import load_clip

        clip = load_clip(cfg.clip, device="cpu", cache_dir=cfg.cache_dir)
    check_retrieval(cfg, clip)
    init_ray(address)
    check_resources(cfg)
    make_pool = lambda: WorkerPool(workers or cfg.engine.workers, cfg.engine.gpus_per_worker, cfg.engine.cpus_per_worker)  # noqa: E731
    _, _, pool = _build(cfg, planned, make_pool, clip, progress)
    pool.close()
    return [p.job for p in planned]


def run_experiment(
    cfg: ExperimentConfig,
    out: str,
    address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run ``cfg`` into ``out``; returns the result records (also written to out/results.json)."""
    from genbench.engine.dispatch import WorkerPool, init_ray
    from genbench.metrics.zeroshot import class_text_embeddings
    from genbench.models.clip import load_clip

    check_out(out)
    planned = plan_jobs(cfg, join(out, "shards"))
    check_data(cfg)
    check_models(cfg)
    clip = load_clip(cfg.clip, device="cpu", cache_dir=cfg.cache_dir)
    check_retrieval(cfg, clip)
    resources = init_ray(address)
    log.info("ray cluster: %s", {k: v for k, v in resources.items() if k in ("CPU", "GPU")})
    check_resources(cfg)
    make_pool = lambda: WorkerPool(workers or cfg.engine.workers, cfg.engine.gpus_per_worker, cfg.engine.cpus_per_worker)  # noqa: E731
    states, extras, pool = _build(cfg, planned, make_pool, clip, progress)
    try:
        records = []
        per_dataset: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for p, st in zip(planned, states):
            ds = p.job.dataset
            spec = get_dataset(ds)
            if ds not in per_dataset:
                test_emb, labels = split_embeddings(
                    ds, "test", clip, cfg.clip, cfg.data_root, resolve_cache_dir(cfg.cache_dir),
                    split_embedder(cfg.clip, cfg.data_root, cfg.cache_dir, pool),
                )
                per_dataset[ds] = (test_emb, labels, class_text_embeddings(clip, spec.classes, spec.templates))
            test_emb, labels, text_emb = per_dataset[ds]
            for k in p.source.shots:
                sums, counts = st.centroid_inputs() if k == p.job.shots else coll.prefix_sums(st, clip.slug, k)
                external = _external_loader(st, clip.slug, k)
                scores = score_collection(spec, cfg.metrics, sums, counts, test_emb, labels, text_emb, external, cfg.seed,
                                          _fid_images(cfg, st, k), cfg.inception_weights)
                records.append(_record(cfg, p, spec, k, int(counts.sum()), len(labels), scores, extras[st.job.uri]))
    finally:
        pool.close()
    write_results(out, records, cfg.storage_options)
    return records


def _external_loader(state: Any, clip_slug: str, shots: int) -> Callable[[], Any]:
    from genbench.shards.reader import read_external

    limit = shots * state.job.num_classes
    names = [t.name for t in state.tasks if t.slot_start < limit]
    return lambda: read_external(state.store, names, clip_slug, shots)


def _fid_images(cfg: ExperimentConfig, state: Any, shots: int) -> Callable[[], tuple[Any, Any]]:
    """Iterators over the collection's first ``shots`` shots (read from its tars) and the real test images."""

    def images():
        import webdataset as wds

        from genbench.shards.schema import decode_image, parse_key

        limit = shots * state.job.num_classes
        urls = [state.store.url(f"{t.name}.tar") for t in state.tasks if t.slot_start < limit]
        external = (
            decode_image(next(s[e] for e in ("jpg", "png", "webp") if e in s))
            for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)
            if parse_key(s["__key__"])[1] < shots
        )
        test = load_split(get_dataset(state.job.dataset), "test", cfg.data_root)
        return external, (test.image(i) for i in range(len(test)))

    return images


def _tiny(cfg: ExperimentConfig, p: Planned) -> bool:
    return is_tiny(cfg.clip) or (p.source.source == "generated" and is_tiny(p.source.generator))


def _record(cfg, p: Planned, spec, shots: int, n_train: int, n_test: int, scores: dict, extra: dict) -> dict[str, Any]:
    c = extra["cost"]
    return {
        "dataset": spec.name,
        "group": spec.group,
        "source": p.source.source,
        "generator": p.source.generator if p.source.source == "generated" else None,
        "strategy": p.strategy,
        "shots": shots,
        "clip": cfg.clip,
        "metric": spec.metric,
        "n_train": n_train,
        "n_test": n_test,
        "variant": p.job.variant,
        "collection": p.job.uri,
        "seed": cfg.seed,
        "tiny_models": extra["tiny_models"],
        # Classes with fewer than `shots` images give all they have (original data); the gap is reported, not hidden.
        "shortfall": int(shots * spec.num_classes - n_train),
        **({"mts": round(float(extra["mts"]), 6)} if "mts" in extra else {}),
        "scores": scores,
        "cost": {
            "device": c["device"],
            "device_seconds": c["device_seconds"],
            "gpu_seconds": c["gpu_seconds"],
            "usd_per_image": c["usd_per_image"],
        },
    }


def write_results(out: str, records: list[dict[str, Any]], storage_options: dict | None = None) -> None:
    from genbench.report.markdown import render_markdown

    store = Store(out, storage_options)
    store.makedirs()
    store.write_bytes("results.json", json.dumps(records, indent=1, sort_keys=True).encode())
    store.write_bytes("report.md", render_markdown(records).encode())
