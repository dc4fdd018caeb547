"""Turning the label values found on disk (an index, a class name, a list of either) into catalog class indices."""

from __future__ import annotations

import json
from typing import Any, Iterable

import numpy as np

from genbench.catalog.spec import DatasetSpec
from genbench.errors import UsageError


def class_lookup(spec: DatasetSpec) -> dict[str, int]:
    """Name -> index, accepting the catalog name and the name with '/' written as '_' (folder names cannot hold '/')."""
    table: dict[str, int] = {}
    for i, name in enumerate(spec.classes):
        table.setdefault(name, i)
        table.setdefault(name.replace("/", "_"), i)
    return table


def one_label(spec: DatasetSpec, value: Any, where: str, lookup: dict[str, int] | None = None) -> int:
    """A single class index from an int, a decimal string or a class name; anything else is a UsageError."""
    lookup = lookup if lookup is not None else class_lookup(spec)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        idx = int(value)
    else:
        text = str(value).strip()
        if text in lookup:
            return lookup[text]
        try:
            idx = int(text)
        except ValueError:
            raise UsageError(where, value, f"a class index 0..{spec.num_classes - 1} or a class name of {spec.name}") from None
    if not 0 <= idx < spec.num_classes:
        raise UsageError(where, value, f"a class index 0..{spec.num_classes - 1}")
    return idx


def many_labels(spec: DatasetSpec, value: Any, where: str, lookup: dict[str, int] | None = None) -> list[int]:
    """Multi-label values: a list, a JSON list, or a ';'-separated string of indices / names."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            value = [v for v in text.split(";") if v.strip()]
    if not isinstance(value, Iterable):
        value = [value]
    return sorted({one_label(spec, v, where, lookup) for v in value})


def label_array(spec: DatasetSpec, rows: list[Any]) -> np.ndarray:
    """(N,) int64 for multi-class specs; (N, C) uint8 0/1 for multi-label specs, from per-sample parsed labels."""
    if not spec.multilabel:
        return np.asarray(rows, dtype=np.int64).reshape(-1)
    out = np.zeros((len(rows), spec.num_classes), dtype=np.uint8)
    for i, idxs in enumerate(rows):
        out[i, list(idxs)] = 1
    return out
