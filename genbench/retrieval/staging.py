"""The download cache of a retrieved collection, ``<collection>/staging/``.

- ``part-*.parquet``: one file per download batch, written whole (a part is either there or not): url, ok, kind,
  attempts, cpu_s, data, and the digest of the fetch policy it ran under. Every attempt is kept, failures included.
- ``assignment.parquet``: which URL fills which (class, shot) slot, so every later run keeps the same URL in the same
  slot and a redone shard is byte-identical.

A URL's outcome is read across all its attempts, whatever order the parts were written in: ``ok`` if any attempt got
the image; else a permanent failure (404, undecodable body, ...) if any attempt had one; else its transient failure
(timeout, 408/429, 5xx, connection reset), which the next run tries again. A failure that the policy decided (a refused
address, a byte or pixel cap) is permanent only under the policy that met it: with another allow-list it is retried.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genbench.retrieval.policy import POLICY_KINDS, TRANSIENT_KINDS
from genbench.shards.store import Store

COLUMNS = ("url", "ok", "kind", "attempts", "cpu_s", "data", "policy")
ASSIGNMENT = "assignment.parquet"


def staging_dir_of(uri: str) -> str:
    """A retrieved collection's download cache: derived from the collection, so moving it keeps its identity."""
    from genbench.shards.store import join

    return join(uri, "staging")


def _parts(store: Store) -> list[str]:
    return [n for n in store.listdir() if n.startswith("part-") and n.endswith(".parquet")]


@dataclass(frozen=True)
class Outcome:
    """What the attempts at one URL came to. ``part`` names the staging part holding its bytes (when ``ok``);
    ``cpu_s`` sums the measured CPU-seconds of every attempt."""

    ok: bool
    kind: str
    cpu_s: float
    part: str | None
    final: bool  # nothing more to try: the image arrived, or asking again under this policy would fail the same way


def read_outcomes(staging: str, storage_options: dict | None = None, policy: str | None = None) -> dict[str, Outcome]:
    """url -> :class:`Outcome` over every part written so far; ``policy`` is the digest of the fetch policy now in
    force (a policy-decided failure met under another one is not final)."""
    store = Store(staging, storage_options)
    rank = {}
    cpu: dict[str, float] = {}
    for name in _parts(store):
        with store.open(name) as f:
            table = pq.read_table(f)
        cols = [table.column(c).to_pylist() for c in ("url", "ok", "kind", "cpu_s")]
        ran_under = table.column("policy").to_pylist() if "policy" in table.column_names else [None] * table.num_rows
        for url, ok, kind, cpu_s, under in zip(*cols, ran_under):
            cpu[url] = cpu.get(url, 0.0) + float(cpu_s or 0.0)
            final = kind not in TRANSIENT_KINDS and (kind not in POLICY_KINDS or (policy is not None and under == policy))
            # Which attempt speaks for the URL: an arrival, else a final failure, else one worth trying again.
            score = 2 if ok else (1 if final else 0)
            if url not in rank or score > rank[url][0]:
                rank[url] = (score, bool(ok), str(kind), name if ok else None)
    return {u: Outcome(ok, kind, cpu[u], part, score > 0) for u, (score, ok, kind, part) in rank.items()}


def read_images(staging: str, parts_by_url: dict[str, str], storage_options: dict | None = None) -> dict[str, bytes]:
    """The downloaded bytes of each URL, reading only the staging parts that hold them (url -> part name)."""
    store = Store(staging, storage_options)
    wanted = pa.array(sorted(parts_by_url), pa.string())
    found: dict[str, bytes] = {}
    for name in sorted(set(parts_by_url.values())):
        with store.open(name) as f:
            table = pq.read_table(f, columns=["url", "ok", "data"])
        table = table.filter(pc.and_(pc.is_in(table.column("url"), value_set=wanted), table.column("ok")))
        for url, data in zip(table.column("url").to_pylist(), table.column("data").to_pylist()):
            found.setdefault(url, data)
    missing = set(wanted.to_pylist()) - set(found)
    if missing:
        raise FileNotFoundError(f"{len(missing)} URL(s) have no downloaded bytes in {staging}, e.g. {sorted(missing)[0]}")
    return found


def results_table(results: list[Any], policy: str = "") -> pa.Table:
    """FetchResults -> a staging part (``policy``: the digest of the fetch policy they ran under)."""
    return pa.table(
        {
            "url": pa.array([r.url for r in results], pa.string()),
            "ok": pa.array([bool(r.ok) for r in results], pa.bool_()),
            "kind": pa.array([r.kind for r in results], pa.string()),
            "attempts": pa.array([int(r.attempts) for r in results], pa.int32()),
            "cpu_s": pa.array([float(r.decode_s + r.encode_s) for r in results], pa.float64()),
            "data": pa.array([r.data if r.ok else None for r in results], pa.binary()),
            "policy": pa.array([policy] * len(results), pa.string()),
        }
    )


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def read_assignment(staging: str, storage_options: dict | None = None) -> dict[tuple[int, int], dict[str, Any]]:
    """(class, shot) -> {url, caption, similarity, id} of every slot assigned by an earlier run."""
    store = Store(staging, storage_options)
    if not store.exists(ASSIGNMENT):
        return {}
    with store.open(ASSIGNMENT) as f:
        rows = pq.read_table(f).to_pylist()
    return {(int(r["cls"]), int(r["shot"])): {k: r[k] for k in ("url", "caption", "similarity", "id")} for r in rows}


def write_assignment(staging: str, slots: dict[tuple[int, int], dict[str, Any]], storage_options: dict | None = None) -> None:
    keys = sorted(slots)
    table = pa.table({
        "cls": pa.array([c for c, _ in keys], pa.int32()),
        "shot": pa.array([k for _, k in keys], pa.int32()),
        "url": pa.array([slots[k]["url"] for k in keys], pa.string()),
        "caption": pa.array([slots[k]["caption"] for k in keys], pa.string()),
        "similarity": pa.array([float(slots[k]["similarity"]) for k in keys], pa.float32()),
        "id": pa.array([int(slots[k]["id"]) for k in keys], pa.int64()),
    })
    Store(staging, storage_options).write_bytes(ASSIGNMENT, table_bytes(table))
