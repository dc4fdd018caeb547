"""A dry run of a config: everything ``genbench run`` would make and need, without loading a model or starting Ray.

:func:`make_plan` gathers the collections (with what already exists under the output), the datasets and other
references the run needs (what is missing and where to get it), the estimated device-hours and USD, and the metrics.
``genbench plan`` prints it; ``genbench run`` prints the same summary before it starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from genbench.catalog.loaders.ondisk import resolve_data_root
from genbench.config import ExperimentConfig, Pricing
from genbench.engine.preflight import check_context
from genbench.errors import UsageError
from genbench.metrics import registry as metric_registry
from genbench.planning.collections import CollectionPlan, expand, on_disk
from genbench.planning.estimate import Estimate, estimate, with_adaptation
from genbench.planning.needs import DatasetNeed, dataset_needs, reference_problems
from genbench.planning.throughput import load_table
from genbench.shards.store import join


@dataclass(frozen=True)
class PlannedCollection:
    collection: CollectionPlan
    estimate: Estimate


@dataclass
class Plan:
    name: str
    out: str
    shards_root: str
    data_root: str
    clip: str | None
    device: str | None  # the device kind asked for (None: each generator's first listed kind)
    pricing: Pricing
    collections: list[PlannedCollection]
    datasets: list[DatasetNeed]
    problems: list[UsageError] = field(default_factory=list)
    metrics: tuple[str, ...] = ()

    @property
    def missing_datasets(self) -> list[DatasetNeed]:
        return [d for d in self.datasets if d.missing]

    @property
    def ready(self) -> bool:
        """Whether a run could start: every dataset and reference is in place."""
        return not self.problems and not self.missing_datasets


def _unique(problems: list[UsageError]) -> list[UsageError]:
    """One line per problem: a source's check and the collection planner meet the same missing index (one under the
    configured path, the other under its absolute form)."""
    seen, out = set(), []
    for p in problems:
        value = os.path.abspath(p.value) if isinstance(p.value, str) and "://" not in p.value else repr(p.value)
        key = (p.field.rsplit(".", 1)[-1], value, p.allowed)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def make_plan(cfg: ExperimentConfig, out: str, data_root: str | None = None, device: str | None = None) -> Plan:
    """Plan ``cfg`` as ``genbench run`` would run it into ``out`` (collections under ``out/shards``). ``data_root``
    overrides the config's; ``device`` is a device kind of the throughput table (None: each generator's first)."""
    table = load_table()
    if device is not None and device not in table.devices:
        raise UsageError("--device", device, tuple(table.devices))
    if data_root is not None:
        cfg = replace(cfg, data_root=data_root)
    shards_root = join(out, "shards")
    ctx = check_context(cfg)
    problems = reference_problems(cfg, ctx)
    read = "://" in out or not os.path.exists(out) or os.path.isdir(out)
    if not read:
        problems.append(UsageError("out", out, "a directory (this path is a file)"))
    planned, provisional, more = expand(cfg, shards_root, ctx)
    problems += more
    rows, train, adaptations = [], set(), set()
    for p in planned:
        coll, found = on_disk(p, cfg.clip_slug, p.job.uri in provisional, read)
        read = read and not coll.unread  # one unreadable collection says it for the whole output
        problems += found
        if p.source.needs_train_split(p.job.spec):
            train.add(p.job.dataset)
        est = estimate(p.job.source, p.job.spec, coll.make_images, table, cfg.pricing, device)
        if coll.make_shards:
            est = with_adaptation(est, p.job, table, cfg.pricing, device, adaptations)
        rows.append(PlannedCollection(coll, est))
    return Plan(name=cfg.name, out=out, shards_root=shards_root, data_root=str(resolve_data_root(cfg.data_root)),
                clip=cfg.clip, device=device, pricing=cfg.pricing, collections=rows,
                datasets=dataset_needs(cfg, train), problems=_unique(problems), metrics=cfg.metrics)


def metric_rows(plan: Plan) -> list[dict[str, object]]:
    """The metrics a run computes, with what each reads."""
    return [{"name": m.name, "title": m.title, "needs": sorted(m.needs), "requires": list(m.requires), "doc": m.doc}
            for m in (metric_registry.get(n) for n in plan.metrics)]
