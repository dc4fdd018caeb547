"""Search parameters chosen by a recall target, as autofaiss does: the cheapest setting whose recall@10 against exact
search, measured on a sample of the indexed vectors, reaches the target.

While an index is built, :class:`ExactNeighbours` keeps the exact top neighbours of a fixed sample of the vectors
(queries drawn from the training rows) over every vector added, one batch at a time, so the truth costs one pass of
``queries x vectors`` products and no second read of the captions. :func:`tune` then walks the index's knobs: ``nprobe``
for IVF, ``k_factor_rf`` (how many PQ candidates per wanted neighbour are re-ranked with the exact-ish refine codes)
for a ``Refine`` index, ``efSearch`` for HNSW. Each query's own row is left out of both its truth and its results
(every query is in the index; finding itself would flatter the recall).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faiss
import numpy as np

log = logging.getLogger(__name__)

K = 10
NPROBES = tuple(2**i for i in range(17))  # 1 ... 65536, cut at the index's nlist
K_FACTORS = (64, 16, 4)  # largest first: each later one starts its nprobe scan where the previous stopped
EF_SEARCHES = (16, 32, 64, 128, 256, 512, 1024)


class ExactNeighbours:
    """Exact inner-product top-``k + 1`` of ``queries`` (rows ``query_ids`` of the index) over the vectors added."""

    def __init__(self, queries: np.ndarray, query_ids: np.ndarray, k: int = K):
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.query_ids = np.asarray(query_ids, dtype=np.int64)
        self.k = k + 1  # one more: a query's own row is among its neighbours
        q = len(self.queries)
        self.scores = np.full((q, 0), -np.inf, dtype=np.float32)
        self.ids = np.zeros((q, 0), dtype=np.int64)

    def add(self, x: np.ndarray, start: int) -> None:
        """Vectors ``x`` are the index's rows ``start, start + 1, ...``."""
        s = self.queries @ x.T
        k = min(self.k, s.shape[1])
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        scores = np.concatenate([self.scores, np.take_along_axis(s, top, 1)], 1)
        ids = np.concatenate([self.ids, top + start], 1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, : self.k]
        self.scores, self.ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)

    def truth(self) -> np.ndarray:
        """(Q, k) ids of each query's exact neighbours, its own row left out."""
        return _without_self(self.ids, self.query_ids, self.k - 1)


def _without_self(ids: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(ids), k), dtype=np.int64)
    for i, (row, me) in enumerate(zip(ids, own)):
        kept = row[row != me]
        out[i] = kept[:k] if len(kept) >= k else np.pad(kept, (0, k - len(kept)), constant_values=-1)
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top-k that ``found`` (its top-k) contains."""
    k = truth.shape[1]
    hits = [len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist())) for f, t in zip(found, truth)]
    return float(np.mean(hits)) / k


@dataclass(frozen=True)
class Tuned:
    params: dict  # faiss ParameterSpace names -> values, e.g. {"nprobe": 256, "k_factor_rf": 16}
    recall: float  # recall@10 at those params, on the query sample
    target: float
    queries: int

    @property
    def met(self) -> bool:
        return self.recall >= self.target


def apply_params(index: faiss.Index, params: dict) -> None:
    """Set faiss search knobs by their ParameterSpace names (``nprobe``, ``k_factor_rf``, ``efSearch``)."""
    space = faiss.ParameterSpace()
    for name, value in params.items():
        space.set_index_parameter(index, name, float(value))


def measure(index: faiss.Index, params: dict, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray) -> float:
    """recall@k of ``index`` at ``params`` (left set) on the query sample, each query's own row left out."""
    apply_params(index, params)
    _, ids = index.search(queries, truth.shape[1] + 1)
    return recall_at_k(_without_self(ids, query_ids, truth.shape[1]), truth)


def tune(index: faiss.Index, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray, target: float) -> Tuned:
    """The cheapest knob setting reaching ``target`` recall@k (k = ``truth.shape[1]``); if none does, the one with
    the best recall, logged as a warning. Cost model: PQ codes scanned (nprobe x list length x code bytes) plus
    candidates re-ranked (k x k_factor x dim)."""
    ivf = faiss.try_extract_index_ivf(index)
    refine = isinstance(index, faiss.IndexRefine)
    base = faiss.downcast_index(index.base_index) if refine else index
    k, dim = truth.shape[1], index.d
    tried: dict[tuple, float] = {}

    def recall(params: dict) -> float:
        key = tuple(sorted(params.items()))
        if key not in tried:
            tried[key] = measure(index, params, queries, query_ids, truth)
            log.debug("recall@%d %.3f at %s", k, tried[key], params)
        return tried[key]

    def done(params: dict, r: float) -> Tuned:
        apply_params(index, params)  # leave the index set to the choice
        return Tuned(params, r, target, len(queries))

    if ivf is not None:
        nprobes = [n for n in NPROBES if n < ivf.nlist] + [ivf.nlist]
        code = max(1, ivf.code_size)
        list_len = index.ntotal / ivf.nlist
        options = []
        start = 0
        for kf in (K_FACTORS if refine else (None,)):
            for i in range(start, len(nprobes)):
                params = {"nprobe": nprobes[i]} | ({"k_factor_rf": kf} if kf else {})
                if recall(params) >= target:
                    cost = nprobes[i] * list_len * code + (k * kf * dim if kf else 0)
                    options.append((cost, params))
                    start = i
                    break
            else:
                break  # not even the whole index at this k_factor: smaller ones will not do better
        if options:
            params = min(options, key=lambda o: o[0])[1]
            return done(params, recall(params))
    elif isinstance(base, faiss.IndexHNSW):
        for ef in EF_SEARCHES:
            if recall({"efSearch": ef}) >= target:
                return done({"efSearch": ef}, recall({"efSearch": ef}))
    else:
        r = recall({})
        if r < target:
            log.warning("index reaches recall@%d %.3f < target %.2f and has no search knob to raise it", k, r, target)
        return done({}, r)
    best = max(tried, key=lambda key: tried[key])
    params = dict(best)
    log.warning(
        "index reaches recall@%d %.3f at best (%s) < target %.2f: a richer factory (more PQ bytes, a refine stage) or "
        "a larger memory budget is needed", k, tried[best], params, target)
    return done(params, tried[best])


def sample_ids(count: int, queries: int) -> np.ndarray:
    """Evenly spaced row numbers among the first ``count`` rows (deterministic)."""
    n = min(count, queries)
    return np.unique(np.linspace(0, count - 1, n).round().astype(np.int64)) if n > 0 else np.zeros(0, np.int64)
