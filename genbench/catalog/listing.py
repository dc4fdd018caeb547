"""What ``genbench datasets`` shows: every catalog entry with its facts and whether its files are under data_root."""

from __future__ import annotations

from typing import Any

from genbench.catalog import dataset_names, get_dataset
from genbench.catalog.loaders.ondisk import find_layout, resolve_data_root

COLUMNS = ("name", "display_name", "group", "num_classes", "metric", "task", "test_size", "found", "layout", "path")
_GROUP_ORDER = {"common": 0, "fine-grained": 1, "rare": 2, "toy": 3}


def list_entries(data_root: str | None) -> list[dict[str, Any]]:
    """One dict per catalog entry (keys: COLUMNS), in the paper's group order then by name."""
    root = resolve_data_root(data_root)
    out = []
    for name in dataset_names():
        spec = get_dataset(name)
        layout = find_layout(spec, root)
        out.append({
            "name": spec.name,
            "display_name": spec.display_name,
            "group": spec.group,
            "num_classes": spec.num_classes,
            "metric": spec.metric,
            "task": spec.task,
            "test_size": spec.test_size,
            "found": layout is not None,
            "layout": layout,
            "path": str(root / spec.name),
        })
    return sorted(out, key=lambda e: (_GROUP_ORDER.get(e["group"], 9), e["name"]))


def format_table(entries: list[dict[str, Any]]) -> str:
    """A plain-text table, one row per entry, columns padded to their widest cell."""
    heads = ("name", "group", "classes", "metric", "task", "test", "found", "layout")
    rows = [
        (e["name"], e["group"], str(e["num_classes"]), e["metric"], e["task"], str(e["test_size"]),
         "yes" if e["found"] else "no", e["layout"] or "-")
        for e in entries
    ]
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [heads, *rows]]
    return "\n".join(lines)
