"""A collection's manifest, wids index and done-shard bookkeeping.

``stats/NNNNNN.json`` records are written by workers, one per committed shard; ``manifest.json`` and the wids index
are rebuilt from them by the driver at the end of a run. The identity of a collection (the settings that decide its
bytes) is checked on every run so that a rerun never mixes samples made with other settings.
"""

from __future__ import annotations

import json
import logging
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
IDENTITY = "identity.json"


def software_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("genbench", "torch", "diffusers", "transformers", "open_clip_torch", "webdataset", "ray", "pyarrow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def check_identity(store: Store, identity: dict[str, Any]) -> None:
    """Record the settings that decide this collection's bytes, or check them against an existing collection."""
    blob = json.dumps(identity, sort_keys=True)
    if store.exists(IDENTITY):
        existing = json.loads(store.read_bytes(IDENTITY))
        if existing != json.loads(blob):
            diff = sorted(k for k in set(existing) | set(identity) if existing.get(k) != identity.get(k))
            raise UsageError(
                "out",
                store.uri,
                f"an output whose collection was made with the same settings (these differ: {', '.join(diff)}); "
                "choose another output directory",
            )
        return
    store.write_bytes(IDENTITY, blob.encode())


def load_records(store: Store) -> dict[str, dict[str, Any]]:
    out = {}
    for name in store.listdir("stats"):
        if not name.endswith(".json"):
            continue
        try:
            rec = json.loads(store.read_bytes(f"stats/{name}"))
            out[rec["shard"]] = rec
        except (ValueError, OSError, KeyError, TypeError) as exc:  # a damaged record means "not done": redo the shard
            log.warning("ignoring unreadable stats record %s: %s", name, exc)
    return out


def shard_status(
    store: Store,
    record: dict[str, Any] | None,
    slots: tuple[int, int],
    clip_slugs: list[str],
    verify: str = "sha256",
) -> str:
    """``"done"``: a record for exactly these slots, a tar of the recorded size (and sha256) and every wanted sidecar;
    ``"embed"``: all of that but a wanted sidecar (a CLIP model added later: only embedding is left to do);
    ``"make"``: anything else."""
    if record is None or (record.get("slot_start"), record.get("slot_stop")) != tuple(slots):
        return "make"
    shard = record["shard"]
    if store.size(record["tar"]) != record["bytes"]:
        return "make"
    if verify == "sha256" and store.sha256(record["tar"]) != record["sha256"]:
        log.warning("shard %s: sha256 mismatch, will redo it", shard)
        return "make"
    if any(not store.exists(sidecar_rel(s, shard)) for s in clip_slugs):
        return "embed"
    return "done"


def invalidate(store: Store, shard_id: int) -> None:
    """Forget a shard so it is redone: its record goes first, so a crash in between leaves it 'not done'."""
    store.remove(stats_rel(shard_name(shard_id)))


def write_manifest(store: Store, spec: dict[str, Any], records: list[dict[str, Any]], extra: dict[str, Any]) -> dict:
    records = sorted(records, key=lambda r: r["shard"])
    shards = [
        {k: r[k] for k in ("tar", "samples", "bytes", "sha256", "slot_start", "slot_stop") if k in r}
        | {"gpu_seconds": round(float(r.get("gpu_seconds", 0.0)), 4), "embeddings": r.get("embeddings", [])}
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
    store.write_bytes(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


def read_manifest(store: Store, field: str = "train") -> dict[str, Any]:
    if not store.exists(MANIFEST):
        raise UsageError(field, store.uri, "a collection directory containing manifest.json")
    return json.loads(store.read_bytes(MANIFEST))
