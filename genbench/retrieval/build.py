"""Building a caption index (see :mod:`genbench.retrieval.index` for the directory it writes): choosing a faiss
factory within a memory budget, streaming caption batches through a CLIP text encoder or precomputed embeddings, and
writing the directory with ``index.json`` last."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, replace
from typing import Any, Iterable, Iterator, Sequence

import faiss
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genbench.errors import UsageError
from genbench.models.refs import clip_slug as slug_of_clip
from genbench.retrieval.factory import FACTORY_FORMS, choose_factory, estimate_bytes
from genbench.retrieval.index import INDEX_FILE, INFO_FILE, META_FILE, IndexInfo
from genbench.retrieval.tuning import ExactNeighbours, Tuned, sample_ids, tune
from genbench.vectors import normalise

log = logging.getLogger(__name__)

URL_COLUMNS = ("url", "URL")
CAPTION_COLUMNS = ("caption", "TEXT", "text")
DEFAULT_RECALL_TARGET = 0.95
DEFAULT_TUNE_QUERIES = 500


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Contiguous float32 unit rows, as faiss takes them."""
    return np.ascontiguousarray(normalise(np.asarray(x, dtype=np.float32)), dtype=np.float32)


def _normalise_factory(factory: str | None) -> str:
    return "Flat" if factory in (None, "", "Flat", "flat") else str(factory).replace(" ", "")


def _check_factory(factory: str, count: int, dim: int, memory_budget_bytes: int | None) -> None:
    try:
        probe = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise UsageError("factory", factory, f"a faiss index_factory string ({FACTORY_FORMS}): {str(exc).splitlines()[0]}") from None
    ivf = faiss.try_extract_index_ivf(probe)
    if ivf is not None and ivf.nlist > count:
        raise UsageError("factory", factory, f"at most {count} IVF lists for {count} vectors (training needs >= 1 point per list)")
    if memory_budget_bytes is not None:
        need = estimate_bytes(factory, count, dim)
        if need > memory_budget_bytes:
            raise UsageError(
                "memory_budget_bytes", memory_budget_bytes, f">= {need} bytes for {factory} over {count} vectors (or a smaller factory)"
            )


# ------------------------------------------------------------------------------------------------- reading captions


def _caption_files(captions: str | Sequence[str], storage_options: dict | None) -> list[fsspec.core.OpenFile]:
    files = fsspec.open_files(captions if isinstance(captions, str) else list(captions), mode="rb",
                              **(storage_options or {}))
    if not files:
        raise UsageError("captions", captions, "parquet file paths or a glob (local or fsspec URL) matching at least one file")
    return list(files)


def _pick(names: Sequence[str], wanted: Sequence[str], what: str, where: str) -> str:
    for w in wanted:
        if w in names:
            return w
    raise UsageError(f"captions[{where}]", sorted(names), f"a {what} column named one of {', '.join(wanted)}")


def _iter_caption_batches(
    files: list[fsspec.core.OpenFile], batch_size: int, embedding_column: str | None
) -> Iterator[tuple[list[str], list[str], np.ndarray | None]]:
    for of in files:
        with of as fh:
            pf = pq.ParquetFile(fh)
            names = pf.schema_arrow.names
            ucol = _pick(names, URL_COLUMNS, "url", of.path)
            ccol = _pick(names, CAPTION_COLUMNS, "caption", of.path)
            cols = [ucol, ccol]
            if embedding_column is not None:
                if embedding_column not in names:
                    raise UsageError("embedding_column", embedding_column, f"a column of {of.path}: {', '.join(names)}")
                cols.append(embedding_column)
            for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
                urls = [u if u is not None else "" for u in batch.column(ucol).to_pylist()]
                caps = [c if c is not None else "" for c in batch.column(ccol).to_pylist()]
                emb = None
                if embedding_column is not None:
                    col = batch.column(embedding_column)
                    emb = np.asarray(col.flatten() if hasattr(col, "flatten") else col, dtype=np.float32)
                    emb = emb.reshape(len(urls), -1)
                yield urls, caps, emb


def _count_rows(files: list[fsspec.core.OpenFile]) -> int:
    total = 0
    for of in files:
        with of as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


# ------------------------------------------------------------------------------------------------- building


def _no_polysemous_training(index: faiss.Index) -> None:
    """faiss's PQ indexes learn a polysemous code order by default (annealing: seconds at 3k vectors, minutes at scale)
    for Hamming pre-filtering, which genbench never turns on; distances and recall do not depend on it."""
    stack = [index]
    while stack:
        idx = faiss.downcast_index(stack.pop())
        if hasattr(idx, "do_polysemous_training"):
            idx.do_polysemous_training = False
        for inner in ("base_index", "index", "refine_index"):
            sub = getattr(idx, inner, None)
            if isinstance(sub, faiss.Index):
                stack.append(sub)


class _Builder:
    """Streams normalised vectors into a faiss index: buffers the first ``train_size`` rows for training when the
    factory needs it, then adds chunk by chunk so memory stays bounded by the index plus one batch.

    Unless the index is exact (``Flat``) or ``tune_queries`` is 0, it also keeps the exact neighbours of a sample of
    the training rows over everything added, for :func:`genbench.retrieval.tuning.tune`."""

    def __init__(self, factory: str, dim: int, train_size: int, tune_queries: int):
        self.index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        _no_polysemous_training(self.index)
        self.dim, self.train_size = dim, train_size
        self.tune_queries = 0 if factory == "Flat" else tune_queries
        self.exact: ExactNeighbours | None = None
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.count = 0

    def _index_add(self, x: np.ndarray) -> None:
        if self.exact is None and self.tune_queries > 0:
            ids = sample_ids(len(x), self.tune_queries)  # the training rows (or, untrained factories, the first batch)
            self.exact = ExactNeighbours(x[ids], ids + self.count)
        if self.exact is not None:
            self.exact.add(x, self.count)
        self.index.add(x)
        self.count += len(x)

    def add(self, x: np.ndarray) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise UsageError("embeddings", tuple(x.shape), f"rows of dimension {self.dim}")
        if self.index.is_trained:
            self._index_add(x)
            return
        self.pending.append(x)
        self.pending_rows += len(x)
        if self.pending_rows >= self.train_size:
            self._train_and_flush()

    def _train_and_flush(self) -> None:
        sample = np.concatenate(self.pending) if self.pending else np.zeros((0, self.dim), np.float32)
        log.info("training %s on %d vectors", type(self.index).__name__, min(len(sample), self.train_size))
        self.index.train(sample[: self.train_size])
        self.pending, self.pending_rows = [], 0
        self._index_add(sample)

    def finish(self, recall_target: float) -> tuple[faiss.Index, Tuned | None]:
        if not self.index.is_trained:
            self._train_and_flush()
        if self.exact is None or len(self.exact.queries) == 0:
            return self.index, None
        tuned = tune(self.index, self.exact.queries, self.exact.query_ids, self.exact.truth(), recall_target)
        log.info("search parameters %s: recall@10 %.3f on %d sampled vectors (target %.2f)",
                 tuned.params, tuned.recall, tuned.queries, recall_target)
        return self.index, tuned


def _digest(*paths: str) -> str:
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _write_dir(index: faiss.Index, meta: pa.Table, info: IndexInfo, out_dir: str, storage_options: dict | None) -> IndexInfo:
    fs, root = fsspec.core.url_to_fs(out_dir, **(storage_options or {}))
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    if fs.exists(f"{root}/{INFO_FILE}"):
        fs.rm(f"{root}/{INFO_FILE}")  # an overwritten directory is incomplete until the new index.json lands
    with tempfile.TemporaryDirectory(prefix="genbench-index-") as tmp:
        local_index, local_meta = os.path.join(tmp, INDEX_FILE), os.path.join(tmp, META_FILE)
        faiss.write_index(index, local_index)
        pq.write_table(meta, local_meta)
        info = replace(info, index_bytes=os.path.getsize(local_index), id=_digest(local_index, local_meta))
        fs.put_file(local_index, f"{root}/{INDEX_FILE}")
        fs.put_file(local_meta, f"{root}/{META_FILE}")
    with fs.open(f"{root}/{INFO_FILE}", "w") as fh:
        json.dump(asdict(info), fh, indent=1)
    return info


def _clip_names(clip: Any, clip_ref: str | None) -> tuple[str, str]:
    ref = clip_ref or str(getattr(clip, "ref", "") or "")
    if not ref:
        raise UsageError("clip", clip, "a CLIP encoder with a .ref, or clip_ref= naming the model the embeddings came from")
    slug = str(getattr(clip, "slug", "") or slug_of_clip(ref))
    return ref, slug


def build_index(
    captions: str | list[str],
    clip: Any,
    out_dir: str,
    *,
    factory: str | None = None,
    memory_budget_bytes: int | None = None,
    embedding_column: str | None = None,
    batch_size: int = 4096,
    train_size: int = 262_144,
    clip_ref: str | None = None,
    storage_options: dict | None = None,
    recall_target: float = DEFAULT_RECALL_TARGET,
    tune_queries: int = DEFAULT_TUNE_QUERIES,
) -> IndexInfo:
    """Index the (url, caption) rows of parquet files ``captions`` (paths, a glob, local or fsspec) into ``out_dir``.

    Text embeddings come from ``clip.encode_texts`` unless ``embedding_column`` names a column of precomputed
    embeddings (LAION ships them), which are re-normalised. ``factory=None`` or ``"Flat"`` gives exact search;
    otherwise a faiss ``index_factory`` string, trained on the first ``train_size`` rows. With
    ``memory_budget_bytes`` and no factory, the largest index that fits is chosen; a factory that does not fit is
    refused naming the field. ``clip_ref`` overrides ``clip.ref`` (needed when ``clip`` is None and embeddings are
    precomputed). ``storage_options`` open the caption files and the output directory (fsspec).

    An approximate index gets the cheapest search parameters whose recall@10 against exact search reaches
    ``recall_target`` on ``tune_queries`` sampled rows (:mod:`genbench.retrieval.tuning`); ``index.json`` records them
    and the recall measured, and :func:`~genbench.retrieval.index.open_index` applies them."""
    if batch_size < 1:
        raise UsageError("batch_size", batch_size, "an integer >= 1")
    if embedding_column is None and not callable(getattr(clip, "encode_texts", None)):
        raise UsageError("clip", clip, "an encoder with encode_texts(list[str]), or embedding_column= for precomputed embeddings")
    files = _caption_files(captions, storage_options)
    count = _count_rows(files)
    if count == 0:
        raise UsageError("captions", captions, "parquet files with at least one (url, caption) row")
    ref, slug = _clip_names(clip, clip_ref)

    def embeddings() -> Iterator[tuple[np.ndarray, list[str], list[str]]]:
        for urls, caps, emb in _iter_caption_batches(files, batch_size, embedding_column):
            x = normalise_rows(emb) if emb is not None else normalise_rows(clip.encode_texts(caps))
            yield x, urls, caps

    return _build(embeddings(), count, out_dir, ref, slug, factory, memory_budget_bytes, train_size,
                  "precomputed" if embedding_column else "computed", storage_options, recall_target, tune_queries)


def build_index_from_embeddings(
    embeddings: np.ndarray | Iterable[np.ndarray],
    metadata: pa.Table,
    out_dir: str,
    *,
    clip_ref: str,
    clip_slug: str | None = None,
    factory: str | None = None,
    memory_budget_bytes: int | None = None,
    train_size: int = 262_144,
    storage_options: dict | None = None,
    recall_target: float = DEFAULT_RECALL_TARGET,
    tune_queries: int = DEFAULT_TUNE_QUERIES,
) -> IndexInfo:
    """Index embeddings computed elsewhere (e.g. on Ray GPU workers): an (N, D) array or an iterator of (n_i, D)
    chunks in the row order of ``metadata`` (a table with url and caption columns, N rows). Rows are re-normalised.
    Pass ``clip_slug=encoder.slug`` so that the slug matches the one the run's CLIP encoder reports."""
    names = metadata.column_names
    ucol = _pick(names, URL_COLUMNS, "url", "metadata")
    ccol = _pick(names, CAPTION_COLUMNS, "caption", "metadata")
    urls, caps = metadata.column(ucol).to_pylist(), metadata.column(ccol).to_pylist()
    chunks = [embeddings] if isinstance(embeddings, np.ndarray) else embeddings

    def stream() -> Iterator[tuple[np.ndarray, list[str], list[str]]]:
        pos = 0
        for chunk in chunks:
            x = normalise_rows(np.asarray(chunk).reshape(len(chunk), -1))
            yield x, urls[pos : pos + len(x)], caps[pos : pos + len(x)]
            pos += len(x)

    slug = clip_slug or slug_of_clip(clip_ref)
    return _build(stream(), metadata.num_rows, out_dir, clip_ref, slug, factory, memory_budget_bytes, train_size,
                  "precomputed", storage_options, recall_target, tune_queries)


def _build(
    batches: Iterator[tuple[np.ndarray, list[str], list[str]]],
    count: int,
    out_dir: str,
    ref: str,
    slug: str,
    factory: str | None,
    memory_budget_bytes: int | None,
    train_size: int,
    source: str,
    storage_options: dict | None = None,
    recall_target: float = DEFAULT_RECALL_TARGET,
    tune_queries: int = DEFAULT_TUNE_QUERIES,
) -> IndexInfo:
    if not (isinstance(recall_target, (int, float)) and 0.0 < recall_target <= 1.0):
        raise UsageError("recall_target", recall_target, "a number in (0, 1]")
    if not (isinstance(tune_queries, int) and 0 <= tune_queries <= 100_000):
        raise UsageError("tune_queries", tune_queries, "an integer in [0, 100000]")
    start = time.perf_counter()
    first = next(batches, None)
    if first is None:
        raise UsageError("embeddings", 0, "at least one row")
    dim = first[0].shape[1]
    if factory is None and memory_budget_bytes is not None:
        factory = choose_factory(count, dim, memory_budget_bytes)
    factory = _normalise_factory(factory)
    _check_factory(factory, count, dim, memory_budget_bytes)
    builder = _Builder(factory, dim, max(1, train_size), tune_queries)
    urls: list[str] = []
    caps: list[str] = []

    def take(item: tuple[np.ndarray, list[str], list[str]]) -> None:
        x, u, c = item
        if len(u) != len(x):
            raise UsageError("embeddings", len(urls) + len(x), f"exactly one embedding per metadata row ({count} rows)")
        builder.add(x)
        urls.extend(u)
        caps.extend(c)

    take(first)
    for item in batches:
        take(item)
    if len(urls) != count:
        raise UsageError("embeddings", len(urls), f"exactly one embedding per metadata row ({count} rows)")
    index, tuned = builder.finish(recall_target)
    meta = pa.table({"id": pa.array(np.arange(count, dtype=np.int64)), "url": pa.array(urls, pa.string()), "caption": pa.array(caps, pa.string())})
    build_s = time.perf_counter() - start
    info = IndexInfo(out_dir, ref, slug, int(dim), factory, int(count), round(build_s, 3), 0, source)
    if tuned is not None:
        info = replace(info, search_params=tuned.params, recall_at_10=round(tuned.recall, 4),
                       recall_target=recall_target, tune_queries=tuned.queries)
    info = _write_dir(index, meta, info, out_dir, storage_options)
    log.info("index %s: %d vectors, %s, %.1f s", out_dir, count, factory, build_s)
    return info


