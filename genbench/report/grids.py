"""Image grids (paper Fig. 7, 12-14): per dataset, a row per class and a column per strategy or source, each cell the
class's first shot read back from the collection's own shards (the tars downstream trainers read)."""

from __future__ import annotations

import logging
import textwrap
from typing import Any

import numpy as np

from genbench.errors import UsageError
from genbench.report.document import Plot
from genbench.report.paper import CONFIGS, DATASETS, STRATEGY_LABELS, short_name
from genbench.report.figstyle import MAX_WIDTH_IN, SMALL, caption_caveat, figure, save, slug
from genbench.report.select import row_label

log = logging.getLogger(__name__)

MAX_DATASETS = 4
MAX_CLASSES = 6
SOURCE_ORDER = {"generated": 0, "retrieved": 1, "original": 2}


def _column_order(rec: dict[str, Any]) -> tuple:
    strategies = list(STRATEGY_LABELS)
    s = rec.get("strategy")
    return (SOURCE_ORDER.get(rec.get("source"), 3), str(rec.get("generator")),
            strategies.index(s) if s in strategies else len(strategies), str(s), row_label(rec))


def _columns(records: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, collection URI, a record) per distinct collection of one dataset, generated strategies first."""
    seen: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for r in sorted(records, key=_column_order):
        uri = r.get("collection")
        if uri and uri not in seen:
            seen[uri] = (row_label(r), uri, r)
    labels = [c[0] for c in seen.values()]
    # two collections with the same label (other seeds or generators' variants): their variant tells them apart
    return [(lab if labels.count(lab) == 1 else f"{lab} [{r.get('variant')}]", uri, r) for lab, uri, r in seen.values()]


def first_shots(uri: str, classes: list[int]) -> dict[int, Any]:
    """Shot 0 of each of ``classes`` as RGB images, read from the fewest shards: samples are laid out shot-major, so
    every class's shot 0 sits in positions [0, num_classes) and only the shards covering those are opened."""
    from genbench.shards import manifest as mf
    from genbench.shards.reader import read_samples
    from genbench.shards.schema import decode_image
    from genbench.shards.store import Store, is_local

    if not is_local(uri):
        raise UsageError("collection", uri, "a local collection (the report reads no remote storage)")
    store = Store(uri)
    man = mf.read_manifest(store, "collection")
    num_classes = int(man["spec"].get("num_classes") or (max(classes) + 1))
    want, found = set(classes), {}
    for entry in mf.shard_entries(man, "collection"):
        if entry["slot_start"] >= num_classes:
            break
        if not any(entry["slot_start"] <= c < entry["slot_stop"] for c in want - set(found)):
            continue
        for s in read_samples(store, entry["tar"][: -len(".tar")]):
            if s.shot == 0 and s.cls in want:
                found[s.cls] = decode_image(s.image)
        if len(found) == len(want):
            break
    return found


def _class_names(dataset: str, record: dict[str, Any]) -> tuple[int, list[str]]:
    from genbench.catalog import get_dataset

    try:
        spec = get_dataset(dataset)
        return spec.num_classes, list(spec.classes)
    except UsageError:
        n = int(record.get("n_train", 0) // max(1, int(record.get("shots", 1)))) or 1
        return n, [f"class {i}" for i in range(n)]


def _grid(dataset: str, cols: list[tuple[str, dict[int, Any]]], classes: list[int], names: list[str], out_dir: str,
          used: list[dict[str, Any]]) -> str:
    # cells shrink (down to 0.8 in) so that the whole grid fits the report's width; labels wrap to the cell
    cell = max(0.8, min(1.35, (MAX_WIDTH_IN - 1.7) / max(len(cols), 1)))
    fig = figure(cell * len(cols) + 1.7, cell * len(classes) + 1.1)
    per_line = max(8, int(cell * 72 / (SMALL * 0.6)))
    blank = np.full((8, 8, 3), 0.85)
    for i, c in enumerate(classes):
        for j, (label, images) in enumerate(cols):
            ax = fig.add_subplot(len(classes), len(cols), i * len(cols) + j + 1)
            img = images.get(c)
            ax.imshow(np.asarray(img) if img is not None else blank, interpolation="nearest")
            if img is None:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=SMALL, transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(textwrap.fill(label, per_line), fontsize=SMALL)
            if j == 0:
                name = names[c] if c < len(names) else f"class {c}"
                ax.set_ylabel(textwrap.fill(name[:30], 14), rotation=0, ha="right", va="center", fontsize=SMALL)
    fig.suptitle(f"{short_name(dataset)}: first shot per class", fontsize=10)
    fig.tight_layout()
    return save(fig, out_dir, f"grid_{slug(dataset)}.png", used)


def image_grids(records: list[dict[str, Any]], out_dir: str, max_datasets: int = MAX_DATASETS,
                max_classes: int = MAX_CLASSES) -> list[Plot]:
    """One grid per dataset whose collections are readable here (at most ``max_datasets``), and one line naming the
    datasets left without a grid and why."""
    title = "Images per class and strategy"
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_dataset.setdefault(r["dataset"], []).append(r)
    order = [d for d in DATASETS if d in by_dataset] + sorted(set(by_dataset) - set(DATASETS))
    out: list[Plot] = []
    unreadable: dict[str, str] = {}
    over_limit = []
    for d in order:
        cols = _columns(by_dataset[d])
        if not cols:
            unreadable[d] = "its records name no collection"
            continue
        if len(out) >= max_datasets:
            over_limit.append(d)
            continue
        num_classes, names = _class_names(d, cols[0][2])
        classes = sorted({int(round(x)) for x in np.linspace(0, num_classes - 1, min(num_classes, max_classes))})
        read, failed = [], []
        for label, uri, _ in cols:
            try:
                read.append((label, first_shots(uri, classes)))
            except (UsageError, OSError, ValueError, KeyError) as e:
                log.info("report: grid for %s: cannot read %s: %s", d, uri, e)
                failed.append(label)
        if not read:
            unreadable[d] = "its collections are not readable here"
            continue
        name = _grid(d, read, classes, names, out_dir, by_dataset[d])
        alt = (f"Image grid for {d}: {len(classes)} class(es) as rows, {len(read)} strategy or source column(s) "
               f"({', '.join(lab for lab, _ in read)}), each cell the class's first shot.")
        cap = f"{d}: shot 0 of {len(classes)} class(es), read from each collection's shards."
        if failed:
            cap += f" Not readable here: {', '.join(failed)}."
        out.append(Plot("grid", f"{title}: {d}", name, alt, caption_caveat(cap, by_dataset[d])))
    reasons = []
    if unreadable:
        reasons.append(f"{len(unreadable)} dataset(s) whose collections are not on this machine or not readable "
                       f"({', '.join(map(short_name, unreadable))})")
    if over_limit:
        reasons.append(f"{len(over_limit)} more dataset(s) past the first {max_datasets} "
                       f"({', '.join(map(short_name, over_limit))})")
    if reasons:
        where = (f"the grids read the shards where the run wrote them ({CONFIGS['table2']} makes every "
                 "strategy's collections)")
        out.append(Plot("grid", f"{title}: other datasets", skipped="; ".join(reasons) + f"; {where}"))
    return out
