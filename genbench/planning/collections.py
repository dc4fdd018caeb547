"""The collections a config makes, their shards, and which of those shards are already done under the output.

Collections are planned by the run's own :func:`genbench.engine.preflight.plan_jobs` (the same names, extents and
shard layout a run uses). Where it cannot name them because a reference is missing (a caption index not built yet),
each collection is planned from its unresolved spec instead, and those whose name depends on what is missing (the
index's own collections, and those that read another collection of the run, such as RA's) are marked provisional:
their counts are right, their directory name may change once the reference exists.

Done shards are counted as a run counts them (:func:`genbench.shards.manifest.shard_status`: a record for the shard's
slots, a tar of the recorded size, a sidecar of the run's CLIP model), except that the tar's sha256 is not read: a
plan of a million-image output stays quick, and a run still verifies every hash.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any

from genbench.config import ExperimentConfig
from genbench.engine.plan import CollectionJob, plan_collection, recorded_shots
from genbench.engine.preflight import Planned, collection_job, plan_jobs
from genbench.errors import UsageError
from genbench.shards import manifest as mf
from genbench.shards.store import Store
from genbench.sources import links, registry
from genbench.sources.base import CheckContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionPlan:
    """One collection: what it will hold after the run and what the run still has to do for it."""

    planned: Planned
    extent: int  # shots it holds after the run: the shots asked for, or more when the output already holds more
    shards: int
    images: int  # (class, shot) slots at the extent
    done_shards: int
    embed_shards: int  # done tars that only lack the run's CLIP sidecar
    make_shards: int
    make_images: int
    provisional: bool = False  # the name may change once a missing reference exists
    unread: bool = False  # the output could not be read: counted as empty

    @property
    def job(self) -> CollectionJob:
        return self.planned.job


def expand(cfg: ExperimentConfig, shards_root: str,
           ctx: CheckContext) -> tuple[list[Planned], set[str], list[UsageError]]:
    """(collections, uris of the provisional ones, problems). Never raises for a missing reference: that is a
    problem to report, and the entry is planned from its unresolved spec."""
    try:
        return plan_jobs(cfg, shards_root, ctx), set(), []
    except UsageError as exc:
        problem = exc
    planned: list[Planned] = []
    provisional: set[str] = set()
    root = shards_root if "://" in shards_root else os.path.abspath(shards_root)
    for ds in cfg.datasets:
        for entry in cfg.sources:
            source = registry.load(entry.ref)
            for spec in entry.spec.expand(ds):
                guessed = False
                try:
                    spec = source.resolve(spec, ctx)
                except UsageError:
                    guessed = True
                spec, unknown = _link_alone(source, spec, entry.spec, ds)
                guessed = guessed or unknown
                job = collection_job(cfg, ds, entry, spec, root)
                planned.append(Planned(job, source, entry.shots))
                if guessed:
                    provisional.add(job.uri)
    return planned, provisional, [problem]


def _link_alone(source: Any, spec: Any, entry_spec: Any, dataset: str) -> tuple[Any, bool]:
    """(the spec linked as far as it can be with no other collection of the run, whether its name is a guess). A
    collection that reads another of the run (RA; adaptation on retrieved images) is named after what it reads:
    unknown here, so it keeps its unlinked spec; one that reads nothing (adaptation on original images) is linked in
    full, so its name is the run's."""
    if not links.reads_others(source):
        return spec, False
    try:
        linked, after = links.link(source, spec, entry_spec, "sources", dataset, [])
    except UsageError:
        return spec, True
    return (spec, True) if after else (linked, False)


def on_disk(planned: Planned, clip_slug: str | None, provisional: bool = False,
            read: bool = True) -> tuple[CollectionPlan, list[UsageError]]:
    """What ``planned`` will hold and what is left to make, from the shard records already under its directory.
    An output that cannot be read (a remote store without credentials), or ``read=False``, counts as empty; a read
    failure is the one problem returned, with ``unread`` set on the plan."""
    job = planned.job
    empty = len(plan_collection(job))
    if read:
        try:
            return _count(planned, Store(job.uri, job.storage_options), clip_slug, provisional)
        except UsageError:
            raise
        except Exception as exc:  # fsspec backends raise their own types (botocore's, aiohttp's) besides OSError
            log.warning("%s: cannot read what is there (%s: %s); counted as empty", job.uri, type(exc).__name__, exc)
            why = f"{type(exc).__name__}: {str(exc)[:80]}"
            plan = CollectionPlan(planned, job.shots, empty, job.shots * job.num_classes, 0, 0, empty,
                                  job.shots * job.num_classes, provisional, unread=True)
            return plan, [UsageError("out", job.uri, f"an output genbench can read ({why})")]
    return CollectionPlan(planned, job.shots, empty, job.shots * job.num_classes, 0, 0, empty,
                          job.shots * job.num_classes, provisional, unread=True), []


def _count(planned: Planned, store: Store, clip_slug: str | None, provisional: bool) -> tuple[CollectionPlan, list]:
    job, problems = planned.job, []
    records = mf.load_records(store)
    differ = mf.identity_difference(store, job.identity())  # the run's own check, read-only
    if differ:
        problems.append(UsageError("out", job.uri, "an output whose collection was made with the same settings "
                                   f"(these differ: {', '.join(differ)}); a run refuses it"))
    intact = {name: r for name, r in records.items() if store.size(f"{name}.tar") == r.get("bytes")}
    extent = max(job.shots, recorded_shots(intact, job.num_classes))
    tasks = plan_collection(replace(job, shots=extent))
    slugs = [clip_slug] if clip_slug and job.clip else []
    done = embed = make_images = 0
    for task in tasks:
        rec = records.get(task.name)
        status = mf.shard_status(store, rec, (task.slot_start, task.slot_stop), slugs, "size") if rec else "make"
        if status == "done":
            done += 1
        elif status == "embed":
            embed += 1
        else:
            make_images += task.slot_stop - task.slot_start
    plan = CollectionPlan(planned, extent, len(tasks), extent * job.num_classes, done, embed,
                          len(tasks) - done - embed, make_images, provisional)
    return plan, problems
