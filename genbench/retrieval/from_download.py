"""Candidates' images from an existing img2dataset download instead of the network.

Labs keep LAION subsets that img2dataset fetched (``--output_format webdataset``): ``NNNNN.tar`` shards beside
``NNNNN.parquet`` status files with one row per input URL (url, key, status, error_message, ...). A retrieved source
with ``images_from`` set looks its candidate URLs up in those status files and copies the images of the successful
ones from the tars into the collection's download cache, as a staging part, exactly as a fetch would have. Nothing
is requested over HTTP.

A URL that is not in the download, or that img2dataset failed to fetch (its X-Robots-Tag opt-out among them), is a
final failure of kind ``not_downloaded`` (``robots_disallowed`` for an opt-out) for that state of the download: the
digest recorded with the part covers the status files, so after another img2dataset run the URLs are looked up again.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import time
import uuid
import pyarrow.parquet as pq

from genbench.errors import UsageError
from genbench.retrieval import staging
from genbench.retrieval.fetch import FetchResult, accept_bytes
from genbench.retrieval.policy import FetchPolicy
from genbench.shards.store import Store

log = logging.getLogger(__name__)

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
STATUS_COLUMNS = ("url", "key", "status", "error_message")


def _status_files(download: Store, where: str) -> list[str]:
    try:
        names = sorted(n for n in download.listdir() if n.endswith(".parquet"))
    except (OSError, FileNotFoundError):
        names = []
    if not names:
        raise UsageError(where, download.uri, "the output folder of an img2dataset download in webdataset format "
                                              "(NNNNN.tar shards with their NNNNN.parquet status files)")
    return names


def check_download(images_from: str, storage_options: dict | None, where: str) -> None:
    """Refuse (exit 2, before anything runs) a folder that is not an img2dataset download."""
    _status_files(Store(images_from, storage_options), where)


def download_digest(images_from: str, storage_options: dict | None, policy: FetchPolicy,
                    where: str = "images_from") -> str:
    """The fetch policy's digest combined with the download's status files (name and size): what an outcome read
    from the download depends on."""
    download = Store(images_from, storage_options)
    h = hashlib.sha256(policy.digest().encode())
    for name in _status_files(download, where):
        h.update(f"\0{name}\0{download.size(name)}".encode())
    return h.hexdigest()[:16]


def _index(download: Store, names: list[str], wanted: set[str]) -> dict[str, tuple[str, str, str, str]]:
    """url -> (shard, key, status, error) for the wanted URLs that the status files list (the first row wins)."""
    found: dict[str, tuple[str, str, str, str]] = {}
    for name in names:
        with download.open(name) as f:
            table = pq.read_table(f, columns=[c for c in STATUS_COLUMNS])
        shard = name[: -len(".parquet")]
        for url, key, status, error in zip(*(table.column(c).to_pylist() for c in STATUS_COLUMNS)):
            if url in wanted and url not in found:
                found[url] = (shard, str(key), str(status), str(error or ""))
    return found


def _images(download: Store, shard: str, keys: set[str], max_bytes: int) -> dict[str, bytes]:
    """key -> image bytes of ``keys`` in ``shard``.tar, streamed once; members are read, never extracted."""
    out: dict[str, bytes] = {}
    with download.open(f"{shard}.tar") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
        for member in tar:
            base, _, ext = member.name.rpartition(".")
            if not member.isfile() or base not in keys or ext.lower() not in IMAGE_EXTS or base in out:
                continue
            if member.size > max_bytes:
                out[base] = b""  # judged too large by accept_bytes' cap without reading it
                continue
            data = tar.extractfile(member)
            out[base] = data.read() if data is not None else b""
    return out


def import_from_download(urls: list[str], images_from: str, staging_dir: str, policy: FetchPolicy,
                         storage_options: dict | None = None, where: str = "images_from") -> int:
    """Write one staging part with the outcome of each of ``urls`` read from the download; returns how many."""
    if not urls:
        return 0
    t0 = time.process_time()
    download = Store(images_from, storage_options)
    names = _status_files(download, where)
    rows = _index(download, names, set(urls))
    by_shard: dict[str, set[str]] = {}
    for shard, key, status, _ in rows.values():
        if status == "success":
            by_shard.setdefault(shard, set()).add(key)
    images: dict[tuple[str, str], bytes] = {}
    for shard, keys in sorted(by_shard.items()):
        for key, data in _images(download, shard, keys, policy.max_bytes).items():
            images[(shard, key)] = data
    results: list[FetchResult] = []
    for url in urls:
        row = rows.get(url)
        if row is None:
            results.append(FetchResult(url, False, "not_downloaded", error="not in the img2dataset download"))
            continue
        shard, key, status, error = row
        if status != "success":
            kind = "robots_disallowed" if "x-robots-tag" in error.lower() else "not_downloaded"
            results.append(FetchResult(url, False, kind, error=f"img2dataset: {error[:200] or status}"))
            continue
        data = images.get((shard, key))
        if data is None:
            results.append(FetchResult(url, False, "not_downloaded", error=f"{shard}.tar holds no image {key}"))
            continue
        results.append(accept_bytes(url, data, policy))
    cpu = (time.process_time() - t0) / len(results)
    for r in results:
        r.decode_s, r.encode_s = cpu, 0.0
    digest = download_digest(images_from, storage_options, policy, where)
    table = staging.results_table(results, digest)
    Store(staging_dir, storage_options).write_bytes(f"part-{uuid.uuid4().hex}.parquet", staging.table_bytes(table))
    ok = sum(r.ok for r in results)
    log.info("%d of %d candidate image(s) found in the img2dataset download %s", ok, len(results), images_from)
    return len(results)

