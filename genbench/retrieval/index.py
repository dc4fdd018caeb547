"""A LAION-style caption index: normalised CLIP text embeddings in a faiss inner-product index, plus a metadata table.

On disk (local path or any fsspec URL, opened with the run's ``storage_options``), one directory::

    index.faiss        faiss.write_index output (written to a local temp file, then uploaded)
    metadata.parquet   id (int64, the faiss id), url, caption
    index.json         clip ref/slug, dim, factory, count, build time, id -- written LAST, so its presence means "complete"

``id`` is a digest of the index and metadata files: the index's identity, part of the identity and the name of every
collection retrieved from it (two indexes in directories of the same name never share a collection; an index built
before ids were kept is identified by its path, as before). Building lives in :mod:`genbench.retrieval.build`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable

import faiss
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genbench.errors import UsageError
from genbench.retrieval.tuning import apply_params

log = logging.getLogger(__name__)

INDEX_FILE, META_FILE, INFO_FILE = "index.faiss", "metadata.parquet", "index.json"
FORMAT_VERSION = 1
SEARCH_KNOBS = frozenset({"nprobe", "k_factor_rf", "efSearch"})


@dataclass(frozen=True)
class IndexInfo:
    """What ``index.json`` holds."""

    path: str
    clip: str
    clip_slug: str
    dim: int
    factory: str
    count: int
    build_s: float
    index_bytes: int
    embeddings: str  # "computed" or "precomputed"
    format_version: int = FORMAT_VERSION
    id: str = ""  # digest of the index and metadata files; empty in indexes built before it was recorded
    # Chosen at build time by the recall target (genbench.retrieval.tuning); applied when the index is opened.
    search_params: dict = field(default_factory=dict)
    recall_at_10: float | None = None  # measured against exact search on a sample of the indexed vectors
    recall_target: float | None = None
    tune_queries: int = 0


def read_info(index_dir: str, storage_options: dict | None = None, field: str = "index") -> IndexInfo:
    """What ``index.json`` says (``id`` is empty for an index built before ids were kept)."""
    fs, root = fsspec.core.url_to_fs(index_dir, **(storage_options or {}))
    path = f"{root.rstrip('/')}/{INFO_FILE}"
    if not fs.exists(path):
        raise UsageError(field, index_dir, f"a directory holding {INFO_FILE} (a complete index written by `genbench index build`)")
    with fs.open(path, "rb") as fh:
        blob = fh.read()
    try:
        raw = json.loads(blob)
        info = IndexInfo(**{k: raw[k] for k in IndexInfo.__dataclass_fields__ if k in raw})
    except (ValueError, TypeError, KeyError) as exc:
        raise UsageError(field, index_dir, f"an index whose {INFO_FILE} is readable ({type(exc).__name__})") from None
    params = info.search_params
    if not isinstance(params, dict) or any(
        name not in SEARCH_KNOBS or isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 1 << 20
        for name, v in params.items()
    ):
        raise UsageError(field, index_dir, f"an index whose {INFO_FILE} search_params map {sorted(SEARCH_KNOBS)} to numbers in [1, 2^20]")
    if info.format_version != FORMAT_VERSION:
        raise UsageError(field, index_dir, f"an index of format version {FORMAT_VERSION} (found {info.format_version})")
    return info


def check_built_with(info: IndexInfo, clip_ref: str | None, clip_slug: str | None, field: str, index_dir: str) -> None:
    """Retrieval queries the index with the run's CLIP text encoder: the index must have been built with it."""
    if clip_slug is None:
        raise UsageError("clip", None, "a CLIP model: retrieval queries the caption index with its text encoder")
    if info.clip_slug != clip_slug:
        raise UsageError(field, index_dir, f"an index built with the run's CLIP model {clip_ref!r} (this one: {info.clip!r})")


# ------------------------------------------------------------------------------------------------- reading


class CaptionIndex:
    """An opened index: cosine top-k over captions, and the metadata rows of the hits."""

    def __init__(self, index: faiss.Index, meta: pa.Table, info: IndexInfo):
        self.index, self.info = index, info
        self._meta = meta
        self._url = meta.column("url")
        self._caption = meta.column("caption")

    @property
    def dim(self) -> int:
        return self.info.dim

    def __len__(self) -> int:
        return self.index.ntotal

    def set_search_params(self, **params: float) -> None:
        """faiss search knobs by name, e.g. ``nprobe=32`` (IVF), ``k_factor_rf=16`` (Refine) or ``efSearch=128``."""
        apply_params(self.index, params)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` captions per query row (normalised, dim D): (Q, k) cosine similarities, best first, and (Q, k)
        int64 ids (-1 where fewer than k exist)."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32).reshape(-1, np.shape(queries)[-1]))
        if q.shape[1] != self.dim:
            raise UsageError("queries", tuple(np.shape(queries)), f"rows of dimension {self.dim} (index built with {self.info.clip})")
        if k < 1:
            raise UsageError("k", k, "an integer >= 1")
        sims, ids = self.index.search(q, int(k))
        return sims, ids.astype(np.int64)

    def metadata(self, ids: Iterable[int]) -> list[dict[str, Any]]:
        """Rows {id, url, caption} for ``ids`` (ids < 0, i.e. missing hits, are skipped)."""
        out = []
        for i in ids:
            i = int(i)
            if i < 0:
                continue
            if i >= len(self._url):
                raise UsageError("ids", i, f"ids below {len(self._url)}")
            out.append({"id": i, "url": self._url[i].as_py(), "caption": self._caption[i].as_py()})
        return out


def open_index(index_dir: str, *, nprobe: int | None = None, ef_search: int | None = None,
               storage_options: dict | None = None) -> CaptionIndex:
    """Open a directory written by :func:`genbench.retrieval.build.build_index` (local or fsspec, with
    ``storage_options``). Search parameters are those the build chose for its recall target (``index.json``);
    ``nprobe`` / ``ef_search`` override them. Indexes built before tuning get ``nprobe=32``, ``efSearch=128`` and
    ``k_factor_rf=16`` (faiss's own defaults of 1, 16 and 1 miss too many neighbours)."""
    info = read_info(index_dir, storage_options)
    fs, root = fsspec.core.url_to_fs(index_dir, **(storage_options or {}))
    root = root.rstrip("/")
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:  # read in place; the metadata is memory-mapped
        index = faiss.read_index(f"{root}/{INDEX_FILE}")
        meta = pq.read_table(f"{root}/{META_FILE}", memory_map=True)
    else:
        with tempfile.TemporaryDirectory(prefix="genbench-index-") as tmp:
            fs.get_file(f"{root}/{INDEX_FILE}", os.path.join(tmp, INDEX_FILE))
            index = faiss.read_index(os.path.join(tmp, INDEX_FILE))
        with fs.open(f"{root}/{META_FILE}", "rb") as fh:
            meta = pq.read_table(fh)
    ci = CaptionIndex(index, meta, info)
    # The parameters tuned at build time to the index's recall target, else (indexes built before tuning) defaults.
    params = dict(info.search_params)
    if faiss.try_extract_index_ivf(index) is not None:
        params.setdefault("nprobe", 32)
        if nprobe:
            params["nprobe"] = nprobe
    if isinstance(index, faiss.IndexRefine):
        params.setdefault("k_factor_rf", 16)
    if "HNSW" in info.factory and "IVF" not in info.factory:
        params.setdefault("efSearch", 128)
        if ef_search:
            params["efSearch"] = ef_search
    ci.set_search_params(**params)
    tuned = f", recall@10 {info.recall_at_10:.3f} at build" if info.recall_at_10 is not None else ""
    log.info("opened index %s: %d captions, %s, %s%s", index_dir, len(ci), info.factory, params, tuned)
    return ci
