"""What a run needs on disk before it starts, and which of it is missing, with where to get it.

Datasets are looked for the way the loaders look for them (the catalog's accepted layouts under ``data_root``),
without opening a split: a plan stays quick on a machine that holds ImageNet. Every other reference (a caption
index, a generator in the local Hugging Face cache, FID's Inception weights) is checked by the same function a run
calls before it writes anything, and a failed check is reported here instead of ending the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from genbench.catalog import get_dataset
from genbench.catalog.loaders import ondisk
from genbench.config import ExperimentConfig, input_problems
from genbench.errors import DatasetNotFound, UsageError
from genbench.sources import registry
from genbench.sources.base import CheckContext


@dataclass(frozen=True)
class DatasetNeed:
    """A dataset the run reads: the splits it needs, those missing, and (when any is) where to get it."""

    name: str
    splits: tuple[str, ...]
    missing: tuple[str, ...]
    path: str
    get_it: str = ""  # the loaders' own not-found message: where we looked, the accepted layouts, the data's origin


def split_present(name: str, split: str, data_root: str | None) -> bool:
    """Whether ``split`` of catalog dataset ``name`` is under ``data_root`` in an accepted layout (not opened)."""
    spec = get_dataset(name)
    if spec.loader["kind"] not in ondisk.ON_DISK:
        return True  # built in (scikit-learn's digits): always there
    return ondisk.layout_for_split(spec, ondisk.resolve_data_root(data_root), split) is not None


def dataset_needs(cfg: ExperimentConfig, train: set[str]) -> list[DatasetNeed]:
    """The test split of every dataset (scores are computed on it), and the train split of those in ``train`` (a
    source reads it: original shots, TIG's starting images)."""
    root = ondisk.resolve_data_root(cfg.data_root)
    out = []
    for name in cfg.datasets:
        splits = ("test", "train") if name in train else ("test",)
        missing = tuple(s for s in splits if not split_present(name, s, cfg.data_root))
        get_it = ""
        if missing:
            spec = get_dataset(name)
            where = f"{root / name} (split{'s' if len(missing) > 1 else ''} {', '.join(missing)})"
            get_it = str(DatasetNotFound(name, where, ondisk.describe_layouts(spec, root), spec.origin))
        out.append(DatasetNeed(name, splits, missing, str(root / name), get_it))
    return out


def reference_problems(cfg: ExperimentConfig, ctx: CheckContext) -> list[UsageError]:
    """Each source's own pre-run check (its index exists and was built with the run's CLIP model, its generator is
    available) and the files the metrics require; one error per failed check."""
    problems = []
    for i, entry in enumerate(cfg.sources):
        try:
            registry.load(entry.ref).check(entry.spec, f"sources[{i}]", ctx)
        except UsageError as exc:
            problems.append(exc)
    if cfg.clip is None:
        problems.append(UsageError("clip", None, "a CLIP model: scores compare CLIP embeddings"))
    return problems + input_problems(cfg)
