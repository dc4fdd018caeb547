"""One experiment config, end to end, as a sequence of stages:

preflight (every check, nothing written) -> Ray and the driver's CLIP model -> prepare each collection (identity,
extent, what is done) -> each source plans its slots (retrieval downloads) -> the worker pool makes, embeds and
commits the shards -> manifests -> the real test split's embeddings (cached) -> every metric at every shot count ->
results.json and report.md. Collections that read others of the run (RA reads a retrieved one) are planned and made
in a later stage, after those.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator

import numpy as np

from genbench.catalog import get_dataset
from genbench.config import ExperimentConfig
from genbench.engine import collections as coll
from genbench.engine.adaptation import adapt_stage
from genbench.engine.plan import CollectionJob
from genbench.engine.preflight import check_resources, preflight
from genbench.engine.scoring import timed_scores
from genbench.metrics.score import ScoreInputs
from genbench.metrics.zeroshot import class_text_embeddings
from genbench.report.records import build_record, write_results
from genbench.shards.lock import CollectionLock
from genbench.shards.store import Store, join
from genbench.sources.base import PlanContext
from genbench.sources.resources import Resources

log = logging.getLogger(__name__)


def _start(cfg: ExperimentConfig, address: str | None, workers: int | None) -> tuple[Any, Callable[[], Any]]:
    """Ray and the driver's CLIP model (its checkpoint is checked here, still before anything is written)."""
    from genbench.engine.dispatch import WorkerPool, init_ray

    resources = init_ray(address)
    log.info("ray cluster: %s", {k: v for k, v in resources.items() if k in ("CPU", "GPU")})
    check_resources(cfg)
    clip = Resources(device="cpu").clip(cfg.clip, cfg.cache_dir) if cfg.clip else None
    n = workers or cfg.engine.workers
    return clip, lambda: WorkerPool(n, cfg.engine.gpus_per_worker, cfg.engine.cpus_per_worker)


@contextmanager
def _built(cfg: ExperimentConfig, planned: list[Any], make_pool: Callable[[], Any], clip: Any,
           progress: bool) -> Iterator[tuple[list[coll.CollectionState], Any]]:
    """Prepare every collection and let its source plan (retrieval downloads run here, before the worker pool takes
    the CPUs/GPUs), then build what is missing on the pool and write the manifests. Yields (states, pool) with the
    pool still up for scoring; raises ShardFailures after writing the manifests if shards stayed failed."""
    from genbench.engine.downloads import download

    with ExitStack() as locks:
        for p in planned:
            locks.enter_context(CollectionLock(Store(p.job.uri, p.job.storage_options), cfg.engine.on_locked,
                                               cfg.engine.lock_wait_s))
        yield from _build_locked(cfg, planned, make_pool, clip, progress, download)


def _build_locked(cfg: ExperimentConfig, planned: list[Any], make_pool: Callable[[], Any], clip: Any, progress: bool,
                  download: Callable[..., int]) -> Iterator[tuple[list[coll.CollectionState], Any]]:
    states = [coll.prepare(p, clip.slug if clip else None, cfg.engine.verify) for p in planned]
    ctx = PlanContext(clip=clip, download=download, progress=progress)
    # A collection that reads another of the run (RA reads a retrieved one) is planned and built in a later stage,
    # once what it reads is on disk; the first stage plans before the pool takes the CPUs/GPUs (downloads).
    order = coll.stages(states)
    _plan(order[0], ctx)
    with make_pool() as pool:
        wall = 0.0
        for k, stage in enumerate(order):
            if k:
                stage = coll.ready(stage, states)
                _plan(stage, ctx)
            adapt_stage(stage, pool, cfg.engine.max_retries, progress)
            wall += coll.build(stage, pool, cfg.engine.max_in_flight, cfg.engine.max_retries, progress, cfg.pricing)
        coll.finish(states, cfg.pricing)
        log.info("built %d collection(s) in %.1fs", len(states), wall)
        yield states, pool


def _plan(stage: list[coll.CollectionState], ctx: PlanContext) -> None:
    for st in stage:
        coll.plan_slots(st, ctx)
        coll.reduce_done(st)
        log.info("%s: %d shard(s) done, %d to make", st.job.uri, st.skipped, len(st.pending))


def build_collections(cfg: ExperimentConfig, shards_root: str, address: str | None = None, workers: int | None = None,
                      progress: bool = True) -> list[CollectionJob]:
    """Build (or complete) every collection of ``cfg`` under ``shards_root`` without scoring (generate/original)."""
    planned = preflight(cfg, shards_root, shards_root, scoring=False)
    clip, make_pool = _start(cfg, address, workers)
    with _built(cfg, planned, make_pool, clip, progress) as (states, _):
        return [st.job for st in states]


def run_experiment(cfg: ExperimentConfig, out: str, address: str | None = None, workers: int | None = None,
                   progress: bool = True) -> list[dict[str, Any]]:
    """Run ``cfg`` into ``out``; returns the result records (also written to out/results.json)."""
    from genbench.engine.testsplit import split_embeddings

    planned = preflight(cfg, out, join(out, "shards"))
    clip, make_pool = _start(cfg, address, workers)
    records = []
    with _built(cfg, planned, make_pool, clip, progress) as (states, pool):
        per_dataset: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for st in states:
            ds = st.job.dataset
            dataset = get_dataset(ds)
            if ds not in per_dataset:
                test_emb, labels = split_embeddings(ds, "test", clip, cfg.clip, cfg.data_root, cfg.cache_dir, pool)
                per_dataset[ds] = (test_emb, labels, class_text_embeddings(clip, dataset.classes, dataset.templates))
            test_emb, labels, text_emb = per_dataset[ds]
            manifest = {**st.extras, "cost": st.cost, "untrained_models": st.planned.untrained}
            job_info = {**st.job.identity(), "collection": st.job.uri}
            for k in st.planned.shots:
                inputs = score_inputs(cfg, st, k, test_emb, labels, text_emb)
                scores, seconds = timed_scores(cfg.metrics, inputs)
                records.append(build_record(dataset=dataset, job=job_info, shots=k, clip=cfg.clip,
                                            n_train=int(inputs.counts.sum()), n_test=len(labels), scores=scores,
                                            manifest=manifest, eval_seconds=seconds))
    write_results(out, records, cfg.storage_options)
    if cfg.finetune is not None:  # after the scores are safe on disk: a failed fine-tuning loses none of them
        from genbench.engine.finetune import finetune_records

        finetune_records(cfg, records)
        write_results(out, records, cfg.storage_options)
    return records


def score_inputs(cfg: ExperimentConfig, st: coll.CollectionState, shots: int, test_emb: np.ndarray,
                 labels: np.ndarray, text_emb: np.ndarray) -> ScoreInputs:
    """What the metrics read for the first ``shots`` shots of a built collection."""
    from genbench.catalog.loaders import load_split
    from genbench.shards.reader import iter_images, read_external

    sums, counts = coll.prefix_sums(st, shots)
    names = coll.shard_names(st, shots)
    dataset = get_dataset(st.job.dataset)

    def images() -> tuple[Any, Any]:
        test = load_split(dataset, "test", cfg.data_root)
        return iter_images(st.store, names, shots), (test.image(i) for i in range(len(test)))

    return ScoreInputs(dataset, test_emb, labels, text_emb, sums, counts,
                       external_reader=lambda: read_external(st.store, names, st.clip_slug, shots),
                       images=images, inception_weights=cfg.inception_weights, seed=cfg.seed,
                       label=f"{st.job.uri} ({shots} shots)")
