"""Driver side of building collections: find what is done, let each source plan its slots, dispatch the rest, reduce
per-class sums, write manifests.

A collection is planned at its extent: the larger of the shots asked for and the shots its shard records already
cover, so asking for fewer shots scores a prefix and rewrites nothing. A shard whose tar is done but lacks a sidecar of
the run's CLIP model is only embedded. Sums are reduced in int64 fixed point (2^-32 resolution), so the total does not
depend on the order in which shards finish: a first run, a resumed run and a rerun that skips everything give
bit-identical centroids.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from genbench import cost
from genbench.catalog import get_dataset
from genbench.engine.plan import ShardTask, plan_collection, recorded_shots
from genbench.errors import ShardFailures
from genbench.shards import manifest as mf
from genbench.shards.classsums import RECORD_KEY, collection_sums, write_totals
from genbench.shards.sidecar import FIXED_SCALE
from genbench.shards.store import Store

log = logging.getLogger(__name__)


@dataclass
class CollectionState:
    planned: Any  # engine.preflight.Planned (job resized to the collection's extent)
    store: Store
    tasks: list[ShardTask]
    clip_slug: str | None
    pending: list[ShardTask] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    sums: np.ndarray | None = None  # int64 fixed point (C, D)
    counts: np.ndarray | None = None
    made: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    previous: dict[str, dict[str, Any]] = field(default_factory=dict)  # records found on disk before this run
    extras: dict[str, Any] = field(default_factory=dict)  # the source's plan, for the manifest
    cost: dict[str, Any] = field(default_factory=dict)  # what making the collection cost (set by finish)

    @property
    def job(self) -> Any:
        return self.planned.job

    def add_fixed(self, class_ids: np.ndarray, fixed: np.ndarray, counts: np.ndarray) -> None:
        if self.sums is None:
            self.sums = np.zeros((self.job.num_classes, fixed.shape[1]), dtype=np.int64)
            self.counts = np.zeros(self.job.num_classes, dtype=np.int64)
        if len(class_ids):
            self.sums[class_ids] += fixed
            self.counts[class_ids] += counts

    def centroid_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        if self.sums is None:
            return np.zeros((self.job.num_classes, 1)), np.zeros(self.job.num_classes, dtype=np.int64)
        return self.sums.astype(np.float64) / FIXED_SCALE, self.counts


def prepare(planned: Any, clip_slug: str | None, verify: str) -> CollectionState:
    """Check the collection's identity, fix its extent, and sort its shards into done, embed-only and to make."""
    job = planned.job
    store = Store(job.uri, job.storage_options)
    store.makedirs()
    mf.check_identity(store, job.identity())
    removed = list(store.clean_temp_files())
    if removed:
        log.info("%s: removed %d temporary file(s) left by an interrupted run", job.uri, len(removed))
    records = mf.load_records(store)
    # Only shards whose tar is still there define what the collection holds (a user may delete the tail to shrink it).
    intact = {name: r for name, r in records.items() if store.size(f"{name}.tar") == r.get("bytes")}
    extent = max(job.shots, recorded_shots(intact, job.num_classes))
    if extent != job.shots:
        log.info("%s: holds %d shots; %d asked for are a prefix", job.uri, extent, job.shots)
        planned = replace(planned, job=replace(job, shots=extent))
        job = planned.job
    tasks = plan_collection(job)
    state = CollectionState(planned, store, tasks, clip_slug if job.clip else None, previous=records)
    slugs = [state.clip_slug] if state.clip_slug else []
    for task in tasks:
        rec = records.get(task.name)
        status = mf.shard_status(store, rec, (task.slot_start, task.slot_stop), slugs, verify)
        if status == "done":
            state.records[task.name] = rec
        elif status == "embed":
            state.pending.append(replace(task, embed_only=True))
        else:
            state.pending.append(task)
    return state


def plan_slots(state: CollectionState, ctx: Any) -> None:
    """The source's plan for the shards to make (retrieval downloads here, before workers take the CPUs/GPUs)."""
    job = state.job
    make = [t for t in state.pending if not t.embed_only]
    done = [(t, state.records[t.name]) for t in state.tasks if t.name in state.records]
    plan = state.planned.source.plan_slots(job, make, done, ctx)
    redo = {t.name for t in plan.redo}
    for name in redo:
        del state.records[name]
    keep = [t for t in state.pending if t.embed_only and t.name not in redo]
    state.pending = sorted(keep + list(plan.pending) + list(plan.redo), key=lambda t: t.shard_id)
    state.extras = plan.extras
    state.skipped = len(state.records)
    if redo:
        log.info("%s: redoing %d shard(s) whose empty slots can now be filled", job.uri, len(redo))


def stages(states: list[CollectionState]) -> list[list[CollectionState]]:
    """The collections in build order: each in a later stage than every collection of the run it reads
    (``Planned.after``: RA after its retrieved collection); within a stage, the run's order."""
    by_uri = {st.job.uri: st for st in states}
    depth: dict[str, int] = {}

    def level(st: CollectionState, path: tuple[str, ...]) -> int:
        uri = st.job.uri
        if uri in path:
            raise ValueError(f"collections read each other: {' -> '.join(path + (uri,))}")
        if uri not in depth:
            reads = [by_uri[u] for u in st.planned.after if u in by_uri]
            depth[uri] = 1 + max((level(u, path + (uri,)) for u in reads), default=-1)
        return depth[uri]

    out: list[list[CollectionState]] = []
    for st in states:
        d = level(st, ())
        out += [[] for _ in range(d + 1 - len(out))]
        out[d].append(st)
    return out


def ready(stage: list[CollectionState], states: list[CollectionState]) -> list[CollectionState]:
    """The collections of ``stage`` whose inputs were all made. One that reads a collection with failed shards is not
    made: its shards are reported failed, naming that collection, so it is never built from a partial input."""
    failed = {st.job.uri for st in states if st.failed}
    out = []
    for st in stage:
        broken = [u for u in st.planned.after if u in failed]
        if not broken:
            out.append(st)
            continue
        log.error("%s: not made, it reads %s, which has failed shards", st.job.uri, ", ".join(broken))
        for t in st.pending:
            st.failed[t.label] = f"not made: it reads {', '.join(broken)}, which has failed shards"
        st.pending = []
    return out


def reduce_done(state: CollectionState) -> None:
    """Class sums of the shards done before this run, from the sums their records list (sidecars only for shards
    committed without them)."""
    if not state.clip_slug or not state.records:
        return
    done = [(t.name, t.slot_stop, state.records[t.name]) for t in state.tasks if t.name in state.records]
    fixed, counts = collection_sums(state.store, done, state.clip_slug, state.job.num_classes, fixed=True)
    present = np.flatnonzero(counts)
    if len(present):
        state.add_fixed(present, fixed[present], counts[present])


def build(states: list[CollectionState], pool: Any, max_in_flight: int = 2, max_retries: int = 2,
          progress: bool = True, pricing: Any = None) -> float:
    """Run every pending shard of ``states`` through ``pool``; returns wall seconds. Failures land in ``state.failed``."""
    by_label = {}
    items = []
    for st in states:
        for t in st.pending:
            by_label[t.label] = (st, t)
            items.append((t.label, (t,)))
    total = sum(t.slot_stop - t.slot_start for _, (t,) in items)
    bar = tqdm(total=total, unit="img", disable=not progress or total == 0, desc="shards", dynamic_ncols=True, smoothing=0.1)
    spent = [0.0, 0.0]  # GPU-seconds, CPU-seconds
    t0 = time.perf_counter()

    def on_result(label: str, res: dict[str, Any]) -> None:
        st, task = by_label[label]
        st.records[task.name] = {k: v for k, v in res.items()
                                 if k not in ("class_ids", "fixed", "counts", "label", "clip_slug", "embed_only")}
        st.made += 1
        if "fixed" in res:
            st.add_fixed(np.asarray(res["class_ids"]), np.asarray(res["fixed"]), np.asarray(res["counts"]))
        if not res.get("embed_only"):
            gpu, cpu = cost.record_seconds(res)
            spent[0], spent[1] = spent[0] + gpu, spent[1] + cpu
        bar.update(task.slot_stop - task.slot_start)
        if pricing is not None:
            bar.set_postfix_str(f"cost ${cost.usd(spent[0], spent[1], pricing):.4f}", refresh=False)

    outcome = pool.map("run", items, on_result, max_in_flight=max_in_flight, max_retries=max_retries) if items else None
    bar.close()
    if items:
        # A worker killed mid-write leaves its temporary file behind; nothing is in flight any more, so sweep now
        # rather than at the next run.
        for st in states:
            removed = list(st.store.clean_temp_files())
            if removed:
                log.info("%s: removed %d temporary file(s) left by failed attempts", st.job.uri, len(removed))
    if outcome is not None:
        for label, err in outcome.failed.items():
            by_label[label][0].failed[label] = err
    return time.perf_counter() - t0


def finish(states: list[CollectionState], pricing: Any) -> None:
    """Write each collection's manifest from its records, then fail naming every shard that stayed failed."""
    failed: dict[str, str] = {}
    for st in states:
        recs = [st.records[t.name] for t in st.tasks if t.name in st.records]
        # A shard this run failed to redo keeps its earlier entry while that tar is still the one its record
        # describes: a failed run must not drop finished work from the manifest.
        for t in st.tasks:
            old = st.previous.get(t.name)
            if t.name not in st.records and old is not None and st.store.size(f"{t.name}.tar") == old["bytes"]:
                recs.append(old)
        recs.sort(key=lambda r: r["shard"])
        short = [s for r in recs for s in r.get("shortfall", [])]
        per_class: dict[str, int] = {}
        for cls, _shot in short:
            per_class[str(cls)] = per_class.get(str(cls), 0) + 1
        # Shards with no record (failed, or never made) are missing whole: an empty collection is all shortfall.
        have = {r["shard"] for r in recs}
        absent = [t for t in st.tasks if t.name not in have]
        for t in absent:
            for cls, n in enumerate(np.bincount(np.arange(t.slot_start, t.slot_stop) % st.job.num_classes,
                                                minlength=st.job.num_classes)):
                if n:
                    per_class[str(cls)] = per_class.get(str(cls), 0) + int(n)
        # Retrieval's search and downloads ran outside the shards; their CPU-seconds are part of its cost.
        fetch_cpu, query_cpu = (float(st.extras.get(k, {}).get("cpu_seconds", 0.0)) for k in ("fetch", "query"))
        st.cost = cost.collection_cost(recs, pricing, fetch_cpu, kind=st.job.source, query_cpu_seconds=query_cpu)
        bad = [b for r in recs for b in r.get("bad_samples", [])]
        extra = {
            **st.extras,
            "cost": st.cost,
            "bad_samples": {"count": sum(int(r.get("bad_count", 0)) for r in recs), "examples": bad[:20]},
            "untrained_models": st.planned.untrained,
            "shortfall": {"missing_samples": len(short) + sum(t.slot_stop - t.slot_start for t in absent),
                          "missing_shards": len(absent), "per_class": per_class},
            "complete": not st.failed and len(recs) == len(st.tasks),
        }
        if st.clip_slug and st.sums is not None and extra["complete"] and not st.failed:
            # The run's reduced sums are exactly the records' sums: the totals let scoring read one file.
            extra[RECORD_KEY] = {st.clip_slug: write_totals(st.store, st.clip_slug, recs, st.sums, st.counts)}
        job = st.job
        spec = {**job.identity(), "shots": job.shots, "clip": job.clip, "source_ref": job.source_ref}
        mf.write_manifest(st.store, spec, recs, extra, get_dataset(job.dataset).classes)
        failed.update(st.failed)
    if failed:
        raise ShardFailures(failed)


def prefix_sums(state: CollectionState, shots: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sums over the first ``shots`` shots: the run's own sums at the full extent, else the persisted sums of
    the prefix's whole shards (and the sidecar of a shard the prefix ends inside)."""
    if shots >= state.job.shots:
        return state.centroid_inputs()
    limit = shots * state.job.num_classes
    shards = [(t.name, t.slot_stop, state.records.get(t.name)) for t in state.tasks if t.slot_start < limit]
    return collection_sums(state.store, shards, state.clip_slug, state.job.num_classes, shots)


def shard_names(state: CollectionState, shots: int) -> list[str]:
    """The shards that hold the first ``shots`` shots."""
    limit = shots * state.job.num_classes
    return [t.name for t in state.tasks if t.slot_start < limit]
