"""Result records: one builder for `genbench run` and `genbench score` (same fields), and results.json + report.md.

Scores are stored at full precision; only displays round them.
"""

from __future__ import annotations

from typing import Any

from genbench.models.refs import clip_untrained, toy_models

UNTRAINED_NOTICE = (
    "NOTE: untrained models were used (tiny or random weights, built offline: {what}). These numbers prove the "
    "plumbing, not the science: do not compare them with the paper."
)
TOY_NOTICE = (
    "NOTE: toy models were used ({what}: trained here on the digits train split, genbench.models.toy). They show what "
    "GenBench measures on a toy world with real signal; the numbers are not the paper's."
)
COST_FIELDS = ("device", "device_seconds", "gpu_seconds", "cpu_seconds", "query_cpu_seconds", "fetch_cpu_seconds",
               "images", "usd_per_image", "usd_per_image_spot", "priced_by", "labelling_usd_per_image")


def untrained(record: dict[str, Any]) -> bool:
    """Whether a record's numbers come from untrained models (records written before the field was renamed said
    ``tiny_models``)."""
    return bool(record.get("untrained_models", record.get("tiny_models", False)))


def _untrained_list(record: dict[str, Any]) -> list[str]:
    return list(record.get("untrained") or (["models named in the collections' manifests"] if untrained(record) else []))


def build_record(
    *,
    dataset: Any,
    job: dict[str, Any],
    shots: int,
    clip: str,
    n_train: int,
    n_test: int,
    scores: dict[str, float],
    manifest: dict[str, Any],
    eval_seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A results.json record. ``job``: the collection's identity (source, variant, run_seed, options) plus its
    ``collection`` URI; ``manifest``: what the collection's manifest holds beyond its shards (cost, untrained
    models, retrieval's MTS); ``eval_seconds``: wall seconds per metric (``genbench.engine.scoring.timed_scores``)."""
    options = job.get("options", {})
    made_by_untrained = manifest.get("untrained_models")
    if made_by_untrained is None:  # a manifest written before the list was kept
        made_by_untrained = ["tiny models (an earlier genbench)"] if manifest.get("tiny_models") else []
    what = sorted(set(made_by_untrained) | ({f"CLIP {clip}"} if clip_untrained(clip) else set()))
    cost = manifest.get("cost") or {}
    record = {
        "dataset": dataset.name,
        "group": dataset.group,
        "source": job.get("source"),
        "generator": options.get("generator"),
        "strategy": options.get("strategy"),
        "shots": int(shots),
        "clip": clip,
        "metric": dataset.metric,
        "n_train": int(n_train),
        "n_test": int(n_test),
        "variant": job.get("variant"),
        "collection": job.get("collection"),
        "seed": job.get("run_seed"),
        "untrained_models": bool(what),
        "untrained": what,
        "toy_models": toy_models([options.get("generator")], clip),
        # Classes with fewer than `shots` images give all they have (original data); the gap is reported, not hidden.
        "shortfall": int(shots * dataset.num_classes - n_train),
        "scores": dict(scores),
        "cost": {k: cost.get(k) for k in COST_FIELDS},
    }
    if eval_seconds is not None:
        record["eval_seconds"] = {k: float(v) for k, v in eval_seconds.items()}
    if "mts" in manifest:
        record["mts"] = manifest["mts"]
    adapted = manifest.get("adaptation")
    if adapted:  # knowledge injection: which method, learned from which images (Table 3's columns)
        record["adaptation"] = {k: adapted.get(k) for k in ("id", "method", "references", "plain_classes",
                                                            "small_references")}
    return record


def notice(records: list[dict[str, Any]]) -> str | None:
    """The untrained-models notice naming what was untrained, or None when every model was trained."""
    what = sorted({w for r in records for w in _untrained_list(r)})
    return UNTRAINED_NOTICE.format(what=", ".join(what)) if what else None


def toy_notice(records: list[dict[str, Any]]) -> str | None:
    """The toy-models notice naming the toy models behind ``records``, or None."""
    what = sorted({w for r in records for w in r.get("toy_models") or []})
    return TOY_NOTICE.format(what=", ".join(what)) if what else None


def summary_blocks(records: list[dict[str, Any]]) -> list[Any]:
    """The run's report.md: its table, the untrained notice and our cost per image beside the paper's Tables 1 and 5."""
    from genbench.report.costs import cost_blocks
    from genbench.report.document import Heading, Notice, Para, Simple
    from genbench.report.tables import table_rows

    header, rows = table_rows(records)
    blocks: list[Any] = [Heading(1, "genbench results")]
    for text in (notice(records), toy_notice(records)):
        if text:
            blocks.append(Notice(text))
    blocks += [
        Para("Scores are percentages of each dataset's own metric on its real test split."),
        Simple(header, rows),
        *cost_blocks(records, per_collection=False),
    ]
    return blocks


def write_results(out: str, records: list[dict[str, Any]], storage_options: dict | None = None) -> None:
    """``out/results.json`` (the records, full precision) and ``out/report.md``."""
    from genbench.report.document import to_markdown
    from genbench.shards.manifest import json_bytes
    from genbench.shards.store import Store

    store = Store(out, storage_options)
    store.makedirs()
    store.write_bytes("results.json", json_bytes(records))
    store.write_bytes("report.md", to_markdown(summary_blocks(records)).encode())
