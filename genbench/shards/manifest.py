"""A collection's manifest, wids index and done-shard bookkeeping.

``stats/NNNNNN.json`` records are written by workers, one per committed shard; ``manifest.json`` and the wids index
are rebuilt from them by the driver at the end of a run. The identity of a collection (the settings that decide its
bytes) is checked on every run so that a rerun never mixes samples made with other settings.
"""

from __future__ import annotations

import json
import logging
import re
import platform
from typing import Any

from genbench.errors import UsageError
from genbench.shards.layout import shard_name
from genbench.shards.sidecar import sidecar_rel
from genbench.shards.store import Store
from genbench.shards.writer import stats_rel

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WIDS_INDEX = "index.wids.json"
SIZES = "sizes.json"  # {tar name: samples}: where open_clip's training input and others look up a shard list's size
CLASSES = "classes.json"  # the class names by label id (a sample's ``cls``)
IDENTITY = "identity.json"


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None: JSON has no NaN, and a reader must not choke on it."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_bytes(obj: Any, indent: int | None = 1) -> bytes:
    """Strict JSON (no NaN, no Infinity), keys sorted."""
    return json.dumps(finite(obj), indent=indent, sort_keys=True, allow_nan=False).encode()


def software_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("genbench", "torch", "diffusers", "transformers", "open_clip_torch", "webdataset", "ray", "pyarrow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def identity_difference(store: Store, identity: dict[str, Any]) -> list[str] | None:
    """The identity keys in which the collection already in ``store`` differs from ``identity`` ([] when they match),
    or None when the store holds no collection yet. Reads only."""
    if not store.exists(IDENTITY):
        return None
    existing, wanted = json.loads(store.read_bytes(IDENTITY)), json.loads(json.dumps(identity, sort_keys=True))
    return sorted(k for k in set(existing) | set(wanted) if existing.get(k) != wanted.get(k))


def check_identity(store: Store, identity: dict[str, Any]) -> None:
    """Record the settings that decide this collection's bytes, or check them against an existing collection."""
    blob = json.dumps(identity, sort_keys=True)
    diff = identity_difference(store, identity)
    if diff is not None:
        if diff:
            raise UsageError(
                "out",
                store.uri,
                f"an output whose collection was made with the same settings (these differ: {', '.join(diff)}); "
                "choose another output directory",
            )
        return
    store.write_bytes(IDENTITY, blob.encode())


SHARD_NAME = re.compile(r"^\d{6}$")


def _valid_record(rec: Any, name: str) -> bool:
    """A record speaks only for the shard its file is named after, and only of that shard's own tar."""
    return (isinstance(rec, dict) and rec.get("shard") == name and rec.get("tar") == f"{name}.tar"
            and isinstance(rec.get("bytes"), int) and isinstance(rec.get("samples"), int)
            and isinstance(rec.get("slot_start"), int) and isinstance(rec.get("slot_stop"), int))


def load_records(store: Store) -> dict[str, dict[str, Any]]:
    """shard name -> its stats record. A record that is unreadable, names another shard or another file, or misses
    a field means "not done": the shard is redone, never read through the record."""
    out = {}
    for fname in store.listdir("stats"):
        name = fname[: -len(".json")] if fname.endswith(".json") else ""
        if not SHARD_NAME.match(name):
            continue
        try:
            rec = json.loads(store.read_bytes(f"stats/{fname}"))
        except (ValueError, OSError) as exc:
            log.warning("ignoring unreadable stats record %s: %s", fname, exc)
            continue
        if _valid_record(rec, name):
            out[name] = rec
        else:
            log.warning("ignoring stats record %s: it does not describe shard %s.tar", fname, name)
    return out


def shard_entries(manifest: dict[str, Any], field: str = "--collection") -> list[dict[str, Any]]:
    """The manifest's shard entries, each naming a shard of this collection (``NNNNNN.tar``): a manifest that points
    elsewhere is refused, never followed."""
    entries = manifest.get("shards")
    if not isinstance(entries, list):
        raise UsageError(field, "manifest.json", "a collection manifest with a list of shards")
    for e in entries:
        tar = e.get("tar") if isinstance(e, dict) else None
        if not isinstance(tar, str) or not SHARD_NAME.match(tar[: -len(".tar")]) or not tar.endswith(".tar"):
            raise UsageError(field, str(tar)[:100], "manifest shards named NNNNNN.tar inside the collection")
        for key in ("slot_start", "slot_stop", "samples"):
            if not isinstance(e.get(key), int):
                raise UsageError(field, f"{tar}.{key}", "manifest shards with integer slot_start, slot_stop, samples")
    return entries


def shard_status(
    store: Store,
    record: dict[str, Any] | None,
    slots: tuple[int, int],
    clip_slugs: list[str],
    verify: str = "sha256",
) -> str:
    """``"done"``: a record for exactly these slots, a tar of the recorded size (and sha256) and every wanted sidecar;
    ``"embed"``: all of that but a readable sidecar of every wanted CLIP model with one row per sample (a CLIP model
    added later, or a damaged sidecar: only embedding is left to do);
    ``"make"``: anything else."""
    if record is None or (record.get("slot_start"), record.get("slot_stop")) != tuple(slots):
        return "make"
    shard = record["shard"]
    if store.size(f"{shard}.tar") != record["bytes"]:
        return "make"
    if verify == "sha256" and store.sha256(f"{shard}.tar") != record.get("sha256"):
        log.warning("shard %s: sha256 mismatch, will redo it", shard)
        return "make"
    if any(not _sidecar_intact(store, record, s) for s in clip_slugs):
        return "embed"  # missing, unreadable, truncated or another shard's sidecar: embedded again from the tar
    return "done"


def _sidecar_intact(store: Store, record: dict[str, Any], clip_slug: str) -> bool:
    """The sidecar of ``clip_slug`` has the size its record states (a stat: resuming reads no embedding), or, for a
    record written before sizes were recorded, one row per sample by its parquet footer."""
    shard = record["shard"]
    recorded = (record.get("sidecar_bytes") or {}).get(clip_slug)
    if isinstance(recorded, int):
        return store.size(sidecar_rel(clip_slug, shard)) == recorded
    return sidecar_rows(store, sidecar_rel(clip_slug, shard)) == record["samples"]


def sidecar_rows(store: Store, rel: str) -> int | None:
    """The row count a sidecar's parquet footer states, or None when it is missing or unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with store.open(rel) as f:
            return int(pq.read_metadata(f).num_rows)
    except UsageError:
        raise  # a path that leaves the collection is refused, not redone
    except (OSError, pa.ArrowException, ValueError):
        return None


def invalidate(store: Store, shard_id: int) -> None:
    """Forget a shard so it is redone: its record goes first, so a crash in between leaves it 'not done'."""
    store.remove(stats_rel(shard_name(shard_id)))


def write_manifest(store: Store, spec: dict[str, Any], records: list[dict[str, Any]], extra: dict[str, Any],
                   classes: list[str] | tuple[str, ...] | None = None) -> dict:
    """``manifest.json`` and the indexes beside the shards that trainers read: the wids index, ``sizes.json`` and,
    given ``classes``, ``classes.json``."""
    records = sorted(records, key=lambda r: r["shard"])
    shards = [
        {k: r[k] for k in ("tar", "samples", "bytes", "sha256", "slot_start", "slot_stop") if k in r}
        | {"gpu_seconds": round(float(r.get("gpu_seconds", 0.0)), 4), "embeddings": r.get("embeddings", [])}
        | ({"class_sums": r["class_sums"]} if r.get("class_sums") else {})
        for r in records
    ]
    manifest = {
        "kind": "genbench-collection",
        "version": 1,
        "spec": spec,
        "software": software_versions(),
        "shards": shards,
        "samples": sum(r["samples"] for r in records),
        **extra,
    }
    wids = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": spec.get("variant", ""),
        "shardlist": [{"url": r["tar"], "nsamples": r["samples"]} for r in records],
    }
    store.write_bytes(WIDS_INDEX, json.dumps(wids, indent=1).encode())
    _write_if_changed(store, SIZES, json.dumps({r["tar"]: r["samples"] for r in records}, indent=1).encode())
    if classes is not None:
        _write_if_changed(store, CLASSES, json.dumps(list(classes), indent=1, ensure_ascii=False).encode("utf-8"))
    store.write_bytes(MANIFEST, json_bytes(manifest))
    return manifest


def _write_if_changed(store: Store, rel: str, data: bytes) -> None:
    """A rerun leaves an index that says the same untouched (its mtime too: a sync tool copies nothing)."""
    try:
        if store.exists(rel) and store.read_bytes(rel) == data:
            return
    except OSError:
        pass
    store.write_bytes(rel, data)


def read_manifest(store: Store, field: str = "train") -> dict[str, Any]:
    if not store.exists(MANIFEST):
        raise UsageError(field, store.uri, "a collection directory containing manifest.json")
    try:
        manifest = json.loads(store.read_bytes(MANIFEST))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(field, store.uri, f"a collection whose manifest.json is JSON ({type(exc).__name__})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("spec"), dict):
        raise UsageError(field, store.uri, "a collection manifest (an object with a spec and shards)")
    return manifest
