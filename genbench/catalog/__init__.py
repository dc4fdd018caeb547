"""The dataset catalog: one YAML file per dataset under ``catalog/datasets/``, read on demand (no import-time registry,
so Ray worker processes see exactly what the driver sees)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

from genbench.catalog.spec import DatasetSpec
from genbench.errors import UsageError

__all__ = ["DatasetSpec", "dataset_names", "get_dataset"]


def _files():
    return resources.files("genbench.catalog") / "datasets"


@lru_cache(maxsize=None)
def dataset_names() -> tuple[str, ...]:
    """Every catalog entry's name, sorted."""
    return tuple(sorted(p.name[: -len(".yaml")] for p in _files().iterdir() if p.name.endswith(".yaml")))


@lru_cache(maxsize=None)
def get_dataset(name: str) -> DatasetSpec:
    """The catalog entry called ``name``; an unknown name is a :class:`UsageError` listing the known ones."""
    if name not in dataset_names():
        raise UsageError("dataset", name, dataset_names())
    text = (_files() / f"{name}.yaml").read_text(encoding="utf-8")
    spec = DatasetSpec.from_dict(yaml.safe_load(text), where=f"catalog[{name}]")
    if spec.name != name:
        raise UsageError(f"catalog[{name}].name", spec.name, f"the file's own name {name!r}")
    return spec
