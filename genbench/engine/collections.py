"""Driver side of building collections: skip done shards, dispatch the rest, reduce per-class sums, write manifests.

Sums are reduced in int64 fixed point (2^-32 resolution), so the total does not depend on the order in which shards
finish: a first run, a resumed run and a rerun that skips everything give bit-identical centroids.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from genbench.engine.plan import CollectionJob, ShardTask, plan_collection
from genbench.errors import ShardFailures
from genbench.shards import manifest as mf
from genbench.shards.reader import sidecar_class_sums
from genbench.shards.sidecar import FIXED_SCALE, class_sums, read_class_embeddings, sidecar_rel, to_fixed
from genbench.shards.store import Store

log = logging.getLogger(__name__)

@dataclass
class CollectionState:
    job: CollectionJob
    store: Store
    tasks: list[ShardTask]
    pending: list[ShardTask] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    sums: np.ndarray | None = None  # int64 fixed point (C, D)
    counts: np.ndarray | None = None
    made: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    previous: dict[str, dict[str, Any]] = field(default_factory=dict)  # records found on disk before this run

    def add(self, class_ids: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
        if self.sums is None:
            self.sums = np.zeros((self.job.num_classes, sums.shape[1]), dtype=np.int64)
            self.counts = np.zeros(self.job.num_classes, dtype=np.int64)
        if len(class_ids):
            self.sums[class_ids] += to_fixed(sums)
            self.counts[class_ids] += counts

    def centroid_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.sums.astype(np.float64) / FIXED_SCALE, self.counts


def clip_slug_of(job: CollectionJob, clip_slug: str | None) -> list[str]:
    return [clip_slug] if (job.clip and clip_slug) else []


def prepare(job: CollectionJob, clip_slug: str | None, verify: str) -> CollectionState:
    """Check the collection's identity and find which shards are done (their sums come from their sidecars)."""
    store = Store(job.uri, job.storage_options)
    store.makedirs()
    mf.check_identity(store, job.identity())
    removed = list(store.clean_temp_files())
    if removed:
        log.info("%s: removed %d temporary file(s) left by an interrupted run", job.uri, len(removed))
    tasks = plan_collection(job)
    state = CollectionState(job, store, tasks)
    records = mf.load_records(store)
    state.previous = records
    slugs = clip_slug_of(job, clip_slug)
    for task in tasks:
        rec = records.get(task.name)
        if mf.shard_is_done(store, rec, (task.slot_start, task.slot_stop), slugs, verify):
            state.records[task.name] = rec
            state.skipped += 1
            if slugs:
                cls, emb = read_class_embeddings(store.read_bytes(sidecar_rel(slugs[0], task.name)))
                s, c = class_sums(cls, emb, job.num_classes)
                present = np.flatnonzero(c)
                state.add(present, s[present], c[present])
        else:
            state.pending.append(task)
    return state


def build(
    states: list[CollectionState],
    pool: Any,
    max_in_flight: int = 2,
    max_retries: int = 2,
    progress: bool = True,
    pricing: Any = None,
) -> float:
    """Run every pending shard of ``states`` through ``pool``; returns wall seconds. Raises ShardFailures at the end."""
    by_label = {}
    items = []
    for st in states:
        for t in st.pending:
            by_label[t.label] = (st, t)
            items.append((t.label, (t,)))
    total = sum(t.slot_stop - t.slot_start for _, (t,) in items)
    bar = tqdm(total=total, unit="img", disable=not progress or total == 0, desc="shards", dynamic_ncols=True, smoothing=0.1)
    spent = {"device_seconds": 0.0}
    t0 = time.perf_counter()

    def on_result(label: str, res: dict[str, Any]) -> None:
        st, task = by_label[label]
        st.records[task.name] = {k: v for k, v in res.items() if k not in ("class_ids", "sums", "counts", "label")}
        st.made += 1
        if "sums" in res:
            st.add(np.asarray(res["class_ids"]), np.asarray(res["sums"]), np.asarray(res["counts"]))
        spent["device_seconds"] += float(res.get("device_seconds", 0.0))
        bar.update(task.slot_stop - task.slot_start)
        if pricing is not None:
            usd = spent["device_seconds"] / 3600.0 * pricing.usd_per_hour / max(1, pricing.gpus_per_instance)
            bar.set_postfix_str(f"cost ${usd:.4f}", refresh=False)

    outcome = pool.map("run", items, on_result, max_in_flight=max_in_flight, max_retries=max_retries) if items else None
    bar.close()
    if items:
        # A worker killed mid-write leaves its temporary file behind; nothing is in flight any more, so sweep now
        # rather than at the next run.
        for st in states:
            removed = list(st.store.clean_temp_files())
            if removed:
                log.info("%s: removed %d temporary file(s) left by failed attempts", st.job.uri, len(removed))
    wall = time.perf_counter() - t0
    if outcome is not None:
        for label, err in outcome.failed.items():
            st, _ = by_label[label]
            st.failed[label] = err
    return wall


def finish(states: list[CollectionState], spec_extra: dict[str, dict[str, Any]]) -> None:
    """Write each collection's manifest from its records, then fail naming every shard that stayed failed."""
    failed: dict[str, str] = {}
    for st in states:
        recs = [st.records[t.name] for t in st.tasks if t.name in st.records]
        # A shard this run failed to redo (e.g. the partial last shard of a smaller run) keeps its earlier entry while
        # that tar is still the one its record describes: a failed run must not drop finished work from the manifest.
        for t in st.tasks:
            old = st.previous.get(t.name)
            if t.name not in st.records and old is not None and st.store.size(old["tar"]) == old["bytes"]:
                recs.append(old)
        recs.sort(key=lambda r: r["shard"])
        short = [s for r in recs for s in r.get("shortfall", [])]
        shortfall: dict[str, int] = {}
        for cls, _shot in short:
            shortfall[str(cls)] = shortfall.get(str(cls), 0) + 1
        extra = dict(spec_extra.get(st.job.uri, {}))
        extra["shortfall"] = {"missing_samples": len(short), "per_class": shortfall}
        extra["complete"] = not st.failed and len(recs) == len(st.tasks)
        spec = {**st.job.identity(), "shots": st.job.shots, "clip": st.job.clip}
        mf.write_manifest(st.store, spec, recs, extra)
        failed.update(st.failed)
    if failed:
        raise ShardFailures(failed)


def prefix_sums(state: CollectionState, clip_slug: str, shots: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sums over the first ``shots`` shots, read from the sidecars (a prefix of the shard list)."""
    limit = shots * state.job.num_classes
    shards = [(t.name, t.slot_stop) for t in state.tasks if t.slot_start < limit]
    return sidecar_class_sums(state.store, shards, clip_slug, state.job.num_classes, shots)
