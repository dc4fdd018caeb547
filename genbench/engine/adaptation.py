"""The adaptation stage: before a stage's generated collections are made, every class (or dataset) adaptation they
need and do not have is trained on the worker pool, one task per unit.

Each unit commits its artefact atomically (:class:`genbench.adapt.artefacts.ClassArtefacts`), so a killed worker
loses only the unit it was training (retried on another worker) and a rerun trains nothing that is done. Collections
that share an adaptation (one entry's DT and ST collections) share its units. A unit that fails on bad input (a class
with no reference image under ``on_empty: fail``) stops the run with exit 2 naming it; a unit that keeps failing
otherwise fails the collections that need it, which are then not generated from a partial adaptation.
"""

from __future__ import annotations

import logging
from typing import Any

from tqdm.auto import tqdm

from genbench.errors import UsageError
from genbench.sources import adaptation

log = logging.getLogger(__name__)


def adapt_stage(states: list[Any], pool: Any, max_retries: int = 2, progress: bool = True) -> None:
    """Train what ``states``' pending shards need; their manifests get the adaptation's summary."""
    items: list[tuple[str, tuple]] = []
    needed_by: dict[str, list[Any]] = {}  # unit label -> the collections that wait for it
    for st in states:
        job = st.job
        if not _adapts(job):
            continue
        if st.pending:
            store = adaptation.artefact_store(job)
            for unit in adaptation.units(job):
                if store.done(unit):
                    continue
                label = f"{store.dir}/{'dataset' if unit < 0 else f'c{unit:04d}'}"
                if label not in needed_by:
                    items.append((label, (job, unit)))
                needed_by.setdefault(label, []).append(st)
    if items:
        log.info("adaptation: training %d unit(s) on %d worker(s)", len(items), len(pool))
        bar = tqdm(total=len(items), unit="class", disable=not progress, desc="adapt", dynamic_ncols=True)
        outcome = pool.map("adapt", items, lambda _label, _rec: bar.update(1), max_in_flight=1,
                           max_retries=max_retries)
        bar.close()
        pool.call_all("release_training")  # generation gets the memory the training pipelines and filters held
        for st in states:  # nothing is in flight any more: what killed attempts left behind goes
            if _adapts(st.job):
                adaptation.artefact_store(st.job).sweep()
        for cause in outcome.causes.values():
            raise cause  # bad input (no reference under on_empty: fail): exit 2, naming the class
        for label, err in outcome.failed.items():
            for st in needed_by[label]:
                log.error("%s: not generated, its adaptation unit %s failed: %s", st.job.uri, label, err)
                for t in st.pending:
                    st.failed[t.label] = f"not made: adaptation unit {label} failed: {err}"
                st.pending = []
    for st in states:
        if _adapts(st.job):
            st.extras["adaptation"] = adaptation.summary(st.job)
            small = st.extras["adaptation"]["small_references"]
            if small:
                log.warning("%s: %d reference image(s) are below 32 px, upsampled for training; textual "
                            "inversion is known to fail on such references (the paper's CIFAR-10)", st.job.uri, small)


def check_output(planned: list[Any], shards_root: str) -> None:
    """Adaptation artefacts are files beside the collections: a run that adapts needs a local or shared filesystem."""
    if "://" in shards_root and any(_adapts(p.job) for p in planned):
        raise UsageError("out", shards_root, "a local or shared-filesystem directory for a run that adapts its "
                                             "generator (adaptation artefacts are written as files beside the "
                                             "collections)")


def _adapts(job: Any) -> bool:
    """Whether the collection's source adapts its model first (a generated source with an ``adapt:`` block)."""
    return getattr(job.spec, "adapt", None) is not None

