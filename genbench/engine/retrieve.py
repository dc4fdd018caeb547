"""Retrieval on Ray: query the caption index, download candidates with Ray Data, assign URLs to slots, shard them.

URL table -> Ray Data ``map_batches`` (fetch with timeouts, byte and pixel caps, address checks, bounded retries;
decode and verify) -> a staging part per batch, written whole -> slot assignment in the driver (the k-th candidate of a
class, by similarity, that arrived) -> shard tasks on the worker pool (resize, encode, embed, commit). Candidates are
oversampled so classes still fill after dead links; every class that stays short is reported.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from genbench.catalog import get_dataset
from genbench.errors import UsageError
from genbench.shards.store import Store
from genbench.sources import staging
from genbench.sources.staging import staging_dir_of

log = logging.getLogger(__name__)


class _FetchBatch:
    """A Ray Data callable: fetch one batch of URLs on a thread pool and write them as one staging part."""

    def __init__(self, staging_dir: str, policy: dict[str, Any], storage_options: dict[str, Any], threads: int):
        from genbench.sources.fetch import FetchPolicy

        self.staging_dir, self.storage_options, self.threads = staging_dir, storage_options, threads
        self.policy = FetchPolicy(**policy)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from genbench.sources.fetch import fetch_many

        urls = batch.column("url").to_pylist()
        t0 = time.process_time()
        results = fetch_many(urls, self.policy, max_workers=self.threads)
        cpu = (time.process_time() - t0) / max(1, len(results))  # measured CPU-seconds, shared over the batch
        for r in results:
            r.decode_s, r.encode_s = cpu, 0.0
        table = staging.results_table(results)
        store = Store(self.staging_dir, self.storage_options)
        store.write_bytes(f"part-{uuid.uuid4().hex}.parquet", staging.table_bytes(table))
        return table.drop_columns(["data"])


def download(urls: list[str], staging_dir: str, policy: dict[str, Any], storage_options: dict[str, Any],
             batch_size: int = 64, concurrency: int = 2, threads: int = 16, progress: bool = True) -> int:
    """Fetch ``urls`` through a Ray Data pipeline into ``staging_dir`` (their status is read back from there);
    returns how many were fetched."""
    if not urls:
        return 0
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    blocks = max(1, -(-len(urls) // batch_size))
    ds = ray.data.from_arrow(pa.table({"url": pa.array(urls, pa.string())})).repartition(blocks)
    ds = ds.map_batches(
        _FetchBatch,
        fn_constructor_kwargs={"staging_dir": staging_dir, "policy": policy, "storage_options": storage_options,
                               "threads": threads},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=concurrency),
        num_cpus=0.5,  # mostly waiting on the network: two fetchers per core
    )
    return sum(b.num_rows for b in ds.iter_batches(batch_format="pyarrow", batch_size=None))


def plan_retrieval(job: Any, clip: Any, index_dir: str) -> Any:
    from genbench.retrieval.index import open_index
    from genbench.retrieval.query import retrieve

    index = open_index(index_dir)
    if index.info.clip_slug != clip.slug:
        raise UsageError("index", index_dir, f"an index built with the run's CLIP model {clip.ref!r} (this one: {index.info.clip!r})")
    spec = get_dataset(job.dataset)
    return retrieve(index, clip, spec.classes, spec.templates, job.shots, oversample=float(job.options.get("oversample", 3.0)))


def prepare_downloads(state: Any, clip: Any, allow: tuple[str, ...], progress: bool = True) -> dict[str, Any]:
    """Query, download what is not cached yet, assign URLs to the pending shards' slots; returns manifest extras."""
    from genbench.retrieval.query import fill_shots, mean_text_similarity

    job = state.job
    staging_dir = staging_dir_of(job.uri)
    plan = plan_retrieval(job, clip, job.options["index"])
    table = plan.url_table()
    wanted = list(dict.fromkeys(table.column("url").to_pylist()))
    done = staging.read_status(staging_dir, job.storage_options)
    tried = set(done.column("url").to_pylist())
    todo = [u for u in wanted if u not in tried]
    policy = {"allow_networks": tuple(allow)}
    t0 = time.perf_counter()
    if todo:
        log.info("%s: downloading %d candidate URL(s) (%d cached)", job.uri, len(todo), len(wanted) - len(todo))
        download(todo, staging_dir, policy, job.storage_options, progress=progress)
    wall = time.perf_counter() - t0
    status = staging.read_status(staging_dir, job.storage_options)
    first = {}
    for url, ok, kind, cpu, part in zip(*(status.column(c).to_pylist() for c in ("url", "ok", "kind", "cpu_s", "part"))):
        first.setdefault(url, (ok, kind, cpu, part))
    ok_urls = [u for u in wanted if first.get(u, (False,))[0]]
    chosen, short = fill_shots(plan, ok_urls)
    n = job.num_classes
    for i, task in enumerate(state.pending):
        payload = []
        for pos in range(task.slot_start, task.slot_stop):
            cls, shot = pos % n, pos // n
            if shot < len(chosen.get(cls, [])):
                cand = asdict(chosen[cls][shot])
                payload.append((cls, shot, {**cand, "part": first[cand["url"]][3]}))
        state.pending[i] = replace(task, payload=tuple(payload))
    kinds = Counter(first[u][1] for u in wanted if u in first)
    per_class, mts = mean_text_similarity(plan)
    if short:
        log.warning("%s: %d class(es) stay short after dead links: %s", job.uri, len(short),
                    ", ".join(f"{c}: {k}/{job.shots}" for c, k in sorted(short.items())[:10]))
    return {
        "retrieval": {**plan.to_json(), "download_wall_s": round(wall, 3)},
        "fetch": {"candidates": len(wanted), "kinds": dict(sorted(kinds.items())),
                  "cpu_seconds": round(float(sum(first[u][2] for u in wanted if u in first)), 4)},
        "short_classes": {str(c): k for c, k in sorted(short.items())},
        "mts": mts,
        "mts_per_class": per_class,
    }


class _TextEncoder:
    """Actor body: one CLIP text encoder per worker (GPU where present)."""

    def __init__(self, clip_ref: str, cache_dir: str | None) -> None:
        from genbench.models.clip import load_clip

        self.clip = load_clip(clip_ref, cache_dir=cache_dir)

    def encode(self, batch: list[str]) -> np.ndarray:
        return self.clip.encode_texts(batch)


class _PoolEncoder:
    """Looks like a CLIP encoder to build_index, but embeds captions on Ray actors (started once, reused)."""

    def __init__(self, clip: Any, workers: int, cache_dir: str | None, chunk: int = 1024):
        self.ref, self.slug, self.dim = clip.ref, clip.slug, clip.dim
        gpus = float(ray.cluster_resources().get("GPU", 0))
        actor = ray.remote(num_cpus=1, num_gpus=1 if gpus >= 1 else 0)(_TextEncoder)
        self._actors = [actor.remote(clip.ref, cache_dir) for _ in range(max(1, workers))]
        self._chunk = chunk

    def encode_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        texts = list(texts)
        starts = range(0, len(texts), self._chunk)
        refs = [self._actors[i % len(self._actors)].encode.remote(texts[s : s + self._chunk]) for i, s in enumerate(starts)]
        return np.concatenate(ray.get(refs)) if refs else np.zeros((0, self.dim), np.float32)

    def close(self) -> None:
        for a in self._actors:
            ray.kill(a)


def build_caption_index(captions: str, clip_ref: str, out: str, *, factory: str | None = None, memory_budget: int | None = None,
                        embedding_column: str | None = None, workers: int = 2, address: str | None = None,
                        cache_dir: str | None = None) -> dict[str, Any]:
    """`genbench index build`: caption embeddings on Ray workers (unless precomputed), then a faiss index in ``out``."""
    from genbench.engine.dispatch import init_ray
    from genbench.models.clip import load_clip
    from genbench.retrieval.index import build_index

    clip = load_clip(clip_ref, device="cpu", cache_dir=cache_dir)
    encoder: Any = clip
    if embedding_column is None:
        init_ray(address)
        encoder = _PoolEncoder(clip, workers, cache_dir)
    try:
        info = build_index(captions, encoder, out, factory=factory, memory_budget_bytes=memory_budget,
                           embedding_column=embedding_column, clip_ref=clip_ref)
    finally:
        if isinstance(encoder, _PoolEncoder):
            encoder.close()
    return asdict(info)
