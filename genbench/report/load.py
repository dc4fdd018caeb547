"""Read results.json files from one or more results directories, or record files written by ``genbench score --json``,
and merge them into one list of records.

A record is identified by what it measured: (dataset, collection, CLIP model, shots). When the same identity appears more
than once (a rerun written to a second results directory, or the same directory given twice) the last one read wins and
the merge says so, so a report never silently averages or double-counts a collection.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import fsspec

from genbench.errors import UsageError

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
REQUIRED_KEYS = ("dataset", "source", "shots", "scores")


@dataclass
class Merged:
    """Records in first-seen order (a replaced record keeps its slot), the files read and what the merge replaced."""

    records: list[dict[str, Any]]
    files: list[str]
    notes: list[str] = field(default_factory=list)


def results_path(results_dir: str) -> str:
    """``results_dir`` may name a directory holding results.json or the file itself (local path or fsspec URL)."""
    stripped = results_dir.rstrip("/")
    return stripped if stripped.endswith(".json") else f"{stripped}/{RESULTS_FILE}"


def read_results(results_dir: str) -> list[dict[str, Any]]:
    path = results_path(results_dir)
    try:
        with fsspec.open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise UsageError("results_dirs", results_dir,
                         f"a directory holding {RESULTS_FILE} (genbench run) or a record file (genbench score --json)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(path, f"unreadable JSON ({e})", "a JSON list of result records") from None
    if isinstance(data, dict) and all(k in data for k in REQUIRED_KEYS):
        data = [data]  # one record: what `genbench score --json` wrote before it wrote a list
    if not isinstance(data, list):
        raise UsageError(path, type(data).__name__, "a JSON list of result records")
    for i, rec in enumerate(data):
        missing = [k for k in REQUIRED_KEYS if not isinstance(rec, dict) or k not in rec]
        if missing:
            raise UsageError(f"{path}[{i}]", f"record without {', '.join(missing)}", f"records with {', '.join(REQUIRED_KEYS)}")
        if isinstance(rec["shots"], bool) or not isinstance(rec["shots"], int) or rec["shots"] < 1:
            raise UsageError(f"{path}[{i}].shots", rec["shots"], "a positive integer (images per class)")
        if not isinstance(rec["scores"], dict):
            raise UsageError(f"{path}[{i}].scores", rec["scores"], "an object of score name -> percent")
    return data


def record_key(rec: dict[str, Any]) -> tuple:
    """What a record measured. Records without a collection path (hand-made ones) fall back to its descriptive fields."""
    where = rec.get("collection") or (rec.get("source"), rec.get("generator"), rec.get("strategy"), rec.get("variant"))
    return (rec["dataset"], where, rec.get("clip"), int(rec["shots"]))


def merge_results(results_dirs: list[str]) -> Merged:
    """Read every results directory in order; a later record with the same :func:`record_key` replaces the earlier one."""
    if not results_dirs:
        raise UsageError("results_dirs", results_dirs, "at least one results directory")
    by_key: dict[tuple, dict[str, Any]] = {}
    origin: dict[tuple, str] = {}
    replaced: dict[tuple[str, str], int] = {}
    files = []
    for d in results_dirs:
        files.append(results_path(d))
        for rec in read_results(d):
            key = record_key(rec)
            if key in by_key:
                pair = (origin[key], results_path(d))
                replaced[pair] = replaced.get(pair, 0) + 1
            by_key[key] = rec  # dict keeps the first insertion's position, so table order stays stable
            origin[key] = results_path(d)
    notes = [
        f"{n} record(s) from {old} were replaced by the same collection and shot count in {new} (the last one read is kept)."
        for (old, new), n in replaced.items()
    ]
    for n in notes:
        log.info("report: %s", n)
    records = list(by_key.values())
    if not records:
        raise UsageError("results_dirs", results_dirs, "results files with at least one record")
    return Merged(records, files, notes)
