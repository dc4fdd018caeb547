"""`genbench score` and `genbench embed`: one collection directory on its own, in-process (no Ray), through the
same stages a run uses (sidecar embedding, test-split cache, metric registry, record builder)."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np

from genbench.catalog import get_dataset
from genbench.engine.processor import embed_samples
from genbench.engine.testsplit import check_split_size, split_embeddings
from genbench.errors import UsageError
from genbench.metrics import registry
from genbench.metrics.score import ScoreInputs, score_all
from genbench.metrics.zeroshot import class_text_embeddings
from genbench.report.records import build_record
from genbench.shards import manifest as mf
from genbench.shards.classsums import RECORD_KEY, collection_sums, read_totals
from genbench.shards.reader import iter_images, read_external, read_samples
from genbench.shards.lock import CollectionLock
from genbench.shards.sidecar import sidecar_rel
from genbench.shards.store import Store
from genbench.shards.writer import commit_sidecars, stats_rel, write_sidecars
from genbench.sources.resources import Resources

log = logging.getLogger(__name__)


def timed_scores(metrics: tuple[str, ...], inputs: ScoreInputs) -> tuple[dict[str, float], dict[str, float]]:
    """Every requested metric, as :func:`score_all` computes it, and the wall seconds each one took (paper Fig. 5).

    Each metric is timed around its own scorer only, so a metric's time never depends on the order of ``metrics``:
    what scorers share is made before the clock starts (the test split's embeddings and the class sums exist already;
    the external embeddings are read from the sidecars first when any requested metric needs them, timed as
    ``read_embeddings``). A metric that does not apply gets no score and no time.
    """
    scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    if any("sidecars" in registry.get(name).needs for name in metrics) and inputs.external_reader is not None:
        start = time.perf_counter()
        inputs.external()
        seconds["read_embeddings"] = time.perf_counter() - start
    for name in metrics:
        start = time.perf_counter()
        one = score_all((name,), inputs)
        elapsed = time.perf_counter() - start
        if one:
            scores.update(one)
            seconds[name] = elapsed
    return scores, seconds


def _shard_name(entry: dict[str, Any]) -> str:
    return str(entry["tar"])[: -len(".tar")]


def embed_collection(uri: str, clip_ref: str, cache_dir: str | None = None, clip: Any = None,
                     storage_options: dict | None = None) -> int:
    """Write the sidecars ``emb/<slug>/`` that a collection lacks for ``clip_ref`` (its tars stay as they are, its
    shard records and manifest list the new sidecars); returns how many were written."""
    store = Store(uri, storage_options)
    mf.read_manifest(store, "--collection")
    clip = clip or Resources(device="cpu").clip(clip_ref, cache_dir)
    with CollectionLock(store):
        return _embed_missing(store, uri, clip)


def _embed_missing(store: Store, uri: str, clip: Any) -> int:
    man = mf.read_manifest(store, "--collection")
    written = 0
    for entry in mf.shard_entries(man):
        name = _shard_name(entry)
        if store.exists(sidecar_rel(clip.slug, name)):
            continue
        try:
            samples = read_samples(store, name)
        except ValueError as exc:
            raise UsageError("--collection", uri, f"shards whose samples hold an image ({exc})") from None
        emb, columns = embed_samples(clip, samples)
        if store.exists(stats_rel(name)):
            rec, _ = commit_sidecars(store, json.loads(store.read_bytes(stats_rel(name))), samples, {clip.slug: emb},
                                     {clip.slug: columns})
            fields = {k: rec[k] for k in (RECORD_KEY, "sidecar_bytes") if k in rec}
        else:
            fields, _ = write_sidecars(store, name, samples, {clip.slug: emb}, {clip.slug: columns})
        entry[RECORD_KEY] = {**(entry.get(RECORD_KEY) or {}), **fields[RECORD_KEY]}
        entry["embeddings"] = sorted(set(entry.get("embeddings", [])) | {clip.slug})
        written += 1
    if written:
        store.write_bytes(mf.MANIFEST, mf.json_bytes(man))
    return written


def embed_split_to_parquet(dataset: str, split: str, clip_ref: str, out: str, data_root: str | None,
                           cache_dir: str | None) -> int:
    """The real split's embeddings as parquet (index, cls, embedding): the very values scoring uses (same cache)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if os.path.isdir(out):
        raise UsageError("--out", out, "a file path ending in .parquet (this is a directory)")
    clip = Resources(device="cpu").clip(clip_ref, cache_dir)
    emb, labels = split_embeddings(dataset, split, clip, clip_ref, data_root, cache_dir)
    cls_col = pa.array(labels.tolist()) if labels.ndim == 2 else pa.array(labels.astype(np.int32), type=pa.int32())
    table = pa.table(
        {
            "index": pa.array(np.arange(len(emb), dtype=np.int64)),
            "cls": cls_col,
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), type=pa.float32()), emb.shape[1]),
        }
    )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, out)
    return len(emb)


def score_collection_dir(
    uri: str,
    dataset: str,
    clip_ref: str,
    shots: int | None = None,
    metrics: list[str] | None = None,
    data_root: str | None = None,
    cache_dir: str | None = None,
    storage_options: dict | None = None,
    inception_weights: str | None = None,
    accept_test_subset: bool = False,
) -> dict[str, Any]:
    """One results record for the collection at ``uri`` (its first ``shots`` shots if given)."""
    names = registry.parse(metrics or list(registry.DEFAULT), "--metrics")
    registry.check_requirements(names, {"inception_weights": inception_weights}, "--metrics",
                                {"inception_weights": "--inception-weights"})
    if inception_weights is not None and (not os.path.isfile(inception_weights)
                                          or not inception_weights.endswith(".safetensors")):
        raise UsageError("--inception-weights", inception_weights, "an existing local .safetensors file of Inception-v3 weights")
    spec = get_dataset(dataset)
    from genbench.catalog.loaders import load_split

    check_split_size(spec, load_split(spec, "test", data_root), accept_test_subset, "--accept-test-subset")
    store = Store(uri, storage_options)
    man = mf.read_manifest(store, "--train")
    if man["spec"].get("dataset") != dataset:
        raise UsageError("--dataset", dataset, f"the collection's own dataset {man['spec'].get('dataset')!r}")
    clip = Resources(device="cpu").clip(clip_ref, cache_dir)
    entries = mf.shard_entries(man, "--train")
    if any(not store.exists(sidecar_rel(clip.slug, _shard_name(s))) for s in entries):
        embed_collection(uri, clip_ref, cache_dir, clip=clip, storage_options=storage_options)
        man = mf.read_manifest(store, "--train")
        entries = mf.shard_entries(man, "--train")
    limit = None if shots is None else shots * spec.num_classes
    whole = limit is None or all(int(s["slot_stop"]) <= limit for s in entries)
    entries = [s for s in entries if limit is None or s["slot_start"] < limit]
    shard_names = [_shard_name(s) for s in entries]
    # The collection's totals when the whole collection is scored, else the shards' own sums.
    totals = read_totals(store, man, entries, clip.slug, spec.num_classes) if whole else None
    sums, counts = totals or collection_sums(store, [(n, int(s["slot_stop"]), s) for n, s in zip(shard_names, entries)],
                                             clip.slug, spec.num_classes, shots)
    test_emb, labels = split_embeddings(dataset, "test", clip, clip_ref, data_root, cache_dir)
    text_emb = class_text_embeddings(clip, spec.classes, spec.templates)

    def images() -> tuple[Any, Any]:
        from genbench.catalog.loaders import load_split

        test = load_split(spec, "test", data_root)
        return iter_images(store, shard_names, shots), (test.image(i) for i in range(len(test)))

    inputs = ScoreInputs(spec, test_emb, labels, text_emb, sums, counts,
                         external_reader=lambda: read_external(store, shard_names, clip.slug, shots), images=images,
                         inception_weights=inception_weights, seed=int(man["spec"].get("run_seed") or 0), label=uri)
    scores, seconds = timed_scores(names, inputs)
    job = {**man["spec"], "collection": uri}
    return build_record(dataset=spec, job=job, shots=shots or int(man["spec"].get("shots")), clip=clip_ref,
                        n_train=int(counts.sum()), n_test=len(labels), scores=scores, manifest=man,
                        eval_seconds=seconds)
