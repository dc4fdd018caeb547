"""Every check a run makes before it writes anything, in one sequence, and the collections it plans.

Nothing here loads a model or starts Ray: references are checked by their form and by what is on disk (a shipped
config, a directory, the local Hugging Face cache, an index's ``index.json``), datasets by opening their splits. What
can only be known from a loaded model (a CLIP checkpoint's pretrained tag) is checked when the driver loads it, which
is still before anything is written.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from genbench.catalog import get_dataset
from genbench.catalog.loaders import load_split
from genbench.config import ExperimentConfig, check_clip_weights
from genbench.engine.adaptation import check_output as check_adaptation_output
from genbench.engine.plan import CollectionJob
from genbench.errors import UsageError
from genbench.shards.store import join
from genbench.sources import links
from genbench.sources.base import CheckContext, Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Planned:
    """One collection of the run: its job, the Source that makes it, the shot counts to score, and the URIs of the
    collections of the run it reads (built before it)."""

    job: CollectionJob
    source: Source
    shots: tuple[int, ...]
    after: tuple[str, ...] = ()

    @property
    def untrained(self) -> list[str]:
        return self.source.untrained(self.job.spec)


def check_out(out: str) -> None:
    """A local output must be a directory this process can write: probed by creating (and removing) a file in it or
    in its nearest existing parent, so a read-only or impossible path fails here, before Ray starts."""
    if "://" in out:
        return
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError("out", out, "a directory (this path is a file)")
    probe_dir = os.path.abspath(out)
    while not os.path.exists(probe_dir):
        probe_dir = os.path.dirname(probe_dir)
    if not os.path.isdir(probe_dir):
        raise UsageError("out", out, f"a directory path ({probe_dir} is a file)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".genbench-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError("out", out, f"a directory genbench can write ({probe_dir}: {exc.strerror or exc})") from None


def check_context(cfg: ExperimentConfig) -> CheckContext:
    return CheckContext(cfg.clip, cfg.clip_slug, cfg.data_root, cfg.cache_dir, dict(cfg.storage_options))


def plan_jobs(cfg: ExperimentConfig, shards_root: str, ctx: CheckContext | None = None) -> list[Planned]:
    """One collection per (dataset, source entry, expansion). Local roots are made absolute: workers run elsewhere.
    A collection that reads others of the run (RA reads a retrieved one) is linked to them once they are named
    (:mod:`genbench.sources.links`). Two entries that name the same collection are refused (their shots belong in one
    list)."""
    from genbench.sources import registry

    ctx = ctx or check_context(cfg)
    if "://" not in shards_root:
        shards_root = os.path.abspath(shards_root)
    planned: list[Planned] = []
    positions: list[int] = []  # each collection's entry in `sources`, for errors
    for ds in cfg.datasets:
        items = [(i, entry, registry.load(entry.ref), spec) for i, entry in enumerate(cfg.sources)
                 for spec in entry.spec.expand(ds)]
        items = [(i, entry, source, source.resolve(spec, ctx)) for i, entry, source, spec in items]
        jobs: dict[int, Planned] = {}
        for n, (i, entry, source, spec) in enumerate(items):
            if not links.reads_others(source):
                jobs[n] = Planned(collection_job(cfg, ds, entry, spec, shards_root), source, entry.shots)
        upstream = [links.Upstream(items[n][0], p.job.source, p.job.variant, p.job.uri, p.job.identity(),
                                   p.job.shots) for n, p in jobs.items()]
        for n, (i, entry, source, spec) in enumerate(items):
            if n not in jobs:
                spec, after = links.link(source, spec, entry.spec, f"sources[{i}]", ds, upstream)
                jobs[n] = Planned(collection_job(cfg, ds, entry, spec, shards_root), source, entry.shots, tuple(after))
        planned += [jobs[n] for n in range(len(items))]
        positions += [i for i, *_ in items]
    _check_distinct(planned, positions)
    return planned


def collection_job(cfg: ExperimentConfig, ds: str, entry: Any, spec: Any, shards_root: str) -> CollectionJob:
    """The job of one collection: ``spec`` (one expansion of ``entry``) for dataset ``ds`` under ``shards_root``."""
    variant = spec.variant(cfg.seed)
    return CollectionJob(
        dataset=ds, source=entry.kind, source_ref=entry.ref, spec=spec, variant=variant,
        uri=join(shards_root, ds, entry.kind, variant), run_seed=cfg.seed, num_classes=get_dataset(ds).num_classes,
        shots=max(entry.shots), shard_size=cfg.shard_size, clip=cfg.clip, data_root=cfg.data_root,
        cache_dir=cfg.cache_dir, storage_options=dict(cfg.storage_options),
    )


def _check_distinct(planned: list[Planned], positions: list[int]) -> None:
    """Refuse two entries that name one collection: the same settings (put both shot counts in one list) or settings
    that differ but share a name."""
    seen: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, p in zip(positions, planned):
        uri, kind, variant, options = p.job.uri, p.job.source, p.job.variant, p.job.spec.identity_options()
        if uri in seen:
            j, other = seen[uri]
            if other == options:
                raise UsageError(f"sources[{i}]", kind,
                                 f"a source whose collection differs from sources[{j}]'s ({variant}): put "
                                 "both shot counts in one list (shots: [..]) instead of repeating the source")
            differ = sorted(k for k in set(other) | set(options) if other.get(k) != options.get(k))
            raise UsageError(f"sources[{i}]", kind,
                             f"a collection name of its own: it differs from sources[{j}] in {', '.join(differ)} "
                             f"but both are named {variant} (e.g. give a model directory another name)")
        seen[uri] = (i, options)


def preflight(cfg: ExperimentConfig, out: str, shards_root: str, scoring: bool = True) -> list[Planned]:
    """Check everything that can be checked before writing (exit code 2 on bad input), then plan the collections."""
    from genbench.sources import registry

    from genbench.config import check_inputs

    check_out(out)
    if scoring:  # files the config or its metrics need (FID's Inception weights), also for library callers
        check_inputs(cfg)
    ctx = check_context(cfg)
    if scoring and not cfg.clip:
        raise UsageError("clip", None, "a CLIP model: scores compare CLIP embeddings")
    if cfg.clip:
        check_clip_weights(cfg)  # weights to download: cached, or the hub answers (else exit 2 now, before Ray)
    for i, entry in enumerate(cfg.sources):
        registry.load(entry.ref).check(entry.spec, f"sources[{i}]", ctx)
    planned = plan_jobs(cfg, shards_root, ctx)
    check_adaptation_output(planned, shards_root)
    from genbench.engine.testsplit import check_split_size

    for ds in cfg.datasets:
        spec = get_dataset(ds)
        if scoring:
            check_split_size(spec, load_split(spec, "test", cfg.data_root), cfg.accept_test_subset, "accept_test_subset")
        if any(p.source.needs_train_split(p.job.spec) for p in planned if p.job.dataset == ds):
            load_split(spec, "train", cfg.data_root)
    return planned


def check_resources(cfg: ExperimentConfig) -> None:
    """After Ray started: the cluster can give each worker what the config asks for."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0))
    want = cfg.engine.gpus_per_worker
    if want and want > gpus:
        raise UsageError("engine.gpus_per_worker", want, f"at most the cluster's {gpus:g} GPU(s)")
