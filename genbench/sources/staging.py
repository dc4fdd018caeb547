"""The download cache of a retrieved collection: parquet parts of (url, ok, kind, attempts, cpu_s, data).

Every URL fetched is recorded, failures included, so a rerun fetches nothing it already tried and assigns the same
URLs to the same slots. Parts are written whole (a part is either there or not), by Ray Data or in-process.
"""

from __future__ import annotations

import io
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COLUMNS = ("url", "ok", "kind", "attempts", "cpu_s", "data")


def staging_dir_of(uri: str) -> str:
    """A retrieved collection's download cache: derived from the collection, so moving it keeps its identity."""
    from genbench.shards.store import join

    return join(uri, "staging")


def _parts(staging: str, storage_options: dict | None) -> tuple[Any, list[str]]:
    fs, root = fsspec.core.url_to_fs(staging, **(storage_options or {}))
    try:
        names = sorted(p for p in fs.ls(root, detail=False) if p.endswith(".parquet"))
    except FileNotFoundError:
        names = []
    return fs, names


def read_status(staging: str, storage_options: dict | None = None) -> pa.Table:
    """(url, ok, kind, attempts, cpu_s, part) of every URL fetched so far; ``part`` names the file holding its bytes."""
    fs, names = _parts(staging, storage_options)
    tables = []
    for name in names:
        with fs.open(name, "rb") as f:
            table = pq.read_table(f, columns=["url", "ok", "kind", "attempts", "cpu_s"])
        tables.append(table.append_column("part", pa.array([name.rsplit("/", 1)[-1]] * len(table), pa.string())))
    if not tables:
        return pa.table({"url": pa.array([], pa.string()), "ok": pa.array([], pa.bool_()), "kind": pa.array([], pa.string()),
                         "attempts": pa.array([], pa.int32()), "cpu_s": pa.array([], pa.float64()),
                         "part": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="default")


def read_images(staging: str, parts_by_url: dict[str, str], storage_options: dict | None = None) -> dict[str, bytes]:
    """The downloaded bytes of each URL, reading only the staging parts that hold them (url -> part name)."""
    wanted = pa.array(sorted(parts_by_url), pa.string())
    fs, names = _parts(staging, storage_options)
    needed = set(parts_by_url.values())
    found: dict[str, bytes] = {}
    for name in names:
        if name.rsplit("/", 1)[-1] not in needed:
            continue
        with fs.open(name, "rb") as f:
            table = pq.read_table(f, columns=["url", "ok", "data"])
        table = table.filter(pc.and_(pc.is_in(table.column("url"), value_set=wanted), table.column("ok")))
        for url, data in zip(table.column("url").to_pylist(), table.column("data").to_pylist()):
            found.setdefault(url, data)
    missing = set(wanted.to_pylist()) - set(found)
    if missing:
        raise FileNotFoundError(f"{len(missing)} URL(s) have no downloaded bytes in {staging}, e.g. {sorted(missing)[0]}")
    return found


def results_table(results: list[Any]) -> pa.Table:
    """FetchResults -> a staging part."""
    return pa.table(
        {
            "url": pa.array([r.url for r in results], pa.string()),
            "ok": pa.array([bool(r.ok) for r in results], pa.bool_()),
            "kind": pa.array([r.kind for r in results], pa.string()),
            "attempts": pa.array([int(r.attempts) for r in results], pa.int32()),
            "cpu_s": pa.array([float(r.decode_s + r.encode_s) for r in results], pa.float64()),
            "data": pa.array([r.data if r.ok else None for r in results], pa.binary()),
        }
    )


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()
