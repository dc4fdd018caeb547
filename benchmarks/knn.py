"""k-NN caption index benchmark: genbench's own index build at its default recall target, over synthetic 512-d vectors.

The index is built through :func:`genbench.retrieval.build.build_index_from_embeddings` with a memory budget per vector
(default 1,200 bytes: no room for float32 exact search), so genbench chooses the factory (IVF-PQ with float16 re-ranking
when it fits) and tunes nprobe and the re-ranking depth until recall@10 against exact search reaches the target on a
sample of the indexed vectors. The benchmark then opens the index as retrieval does (the persisted parameters) and
measures queries/s and recall@1/@10 on other queries (not in the index) against exact search.

The vectors imitate CLIP text embeddings: L2-normalised, a 32-d Gaussian latent mapped into 512-d plus isotropic
noise. Neighbours are not well separated on this data, which makes it hard for IVF (a fair, not a flattering, test).
They are generated in chunks, so 10M vectors never sit in memory at once.

Usage::

    python benchmarks/knn.py --sizes 1M,10M        # the reported run
    python benchmarks/knn.py --quick               # 100k, a smoke test

Ends with one JSON line: per size the factory, chosen parameters, build_s, index bytes per vector, queries_per_s,
recall@1/@10 against exact search, peak RSS, and an extrapolation to LAION-400M.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import tempfile
import time

import faiss
import numpy as np

log = logging.getLogger("benchmarks.knn")
DIM = 512
LAION = 400_000_000


def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


class Synthetic:
    """Deterministic unit vectors with low intrinsic dimension, as CLIP text embeddings have: a 32-d Gaussian latent
    mapped into 512-d by a fixed random orthonormal map, plus small isotropic noise. (Isotropic 512-d noise, or tight
    clusters of it, make all neighbours nearly equidistant and nearest-neighbour recall meaningless.) Chunk ``start``
    is always the same whatever the chunk order."""

    def __init__(self, seed: int = 0, latent: int = 32, noise: float = 0.1):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((DIM, latent)))
        self.basis = np.ascontiguousarray(q.T, dtype=np.float32)  # (latent, DIM), orthonormal rows
        self.seed, self.latent, self.noise = seed, latent, noise

    def chunk(self, start: int, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        x = rng.standard_normal((n, self.latent), dtype=np.float32) @ self.basis
        x += rng.standard_normal((n, DIM), dtype=np.float32) * self.noise
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def index_bytes(index: faiss.Index) -> int:
    with tempfile.NamedTemporaryFile(suffix=".faiss") as f:
        faiss.write_index(index, f.name)
        return os.path.getsize(f.name)


def exact_topk(data: Synthetic, n: int, queries: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """Brute-force ground truth for recall, streaming the database chunk by chunk."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, n, chunk):
        x = data.chunk(start, min(chunk, n - start))
        s = queries @ x.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        cs = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        ci = np.concatenate([best_i, top + start], 1)
        order = np.argsort(-cs, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cs, order, 1), np.take_along_axis(ci, order, 1)
    return best_i


def run_size(n: int, args: argparse.Namespace) -> dict:
    """Build through genbench's own path at the default recall target, open it as retrieval does, and measure."""
    import pyarrow as pa

    from genbench.retrieval.build import build_index_from_embeddings, choose_factory
    from genbench.retrieval.index import open_index

    data = Synthetic(seed=args.seed)
    budget = int(args.bytes_per_vector * n)
    factory = args.factory or choose_factory(n, DIM, budget)
    log.info("size %d: %s (budget %d bytes), recall target %.2f", n, factory, budget, args.recall_target)
    meta = pa.table({"url": pa.array(["u"] * n), "caption": pa.array(["c"] * n)})
    chunks = (data.chunk(start, min(args.chunk, n - start)) for start in range(0, n, args.chunk))
    with tempfile.TemporaryDirectory(prefix="knn-bench-", dir=args.tmp) as tmp:
        t0 = time.perf_counter()
        info = build_index_from_embeddings(chunks, meta, tmp, clip_ref="synthetic", factory=factory,
                                           train_size=min(n, args.max_train), recall_target=args.recall_target)
        build_s = time.perf_counter() - t0
        del meta
        idx = open_index(tmp)  # with the search parameters the build chose
        queries = data.chunk(-1 % 2**62, args.queries)  # not in the index, not in the tuning sample
        idx.search(queries[:10], 10)  # warm-up
        t2 = time.perf_counter()
        _, ids = idx.search(queries, 10)
        search_s = time.perf_counter() - t2
        rss = peak_rss_bytes()
        del idx
    truth = exact_topk(data, n, queries[: args.recall_queries], 10, args.chunk)
    got = ids[: args.recall_queries]
    recall1 = float(np.mean(got[:, 0] == truth[:, 0]))
    recall10 = float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)]))
    out = {
        "vectors": n,
        "factory": info.factory,
        "memory_budget_bytes": budget,
        "search_params": info.search_params,
        "recall_target": info.recall_target,
        "tuned_recall_at_10": info.recall_at_10,
        "build_s": round(build_s, 2),
        "index_bytes": info.index_bytes,
        "bytes_per_vector": round(info.index_bytes / n, 2),
        "queries_per_s": round(args.queries / search_s, 1),
        "recall_at_1": round(recall1, 3),
        "recall_at_10": round(recall10, 3),
        "peak_rss_bytes": rss,
    }
    log.info("  %s", out)
    return out


def extrapolate(results: list[dict], pq: int) -> dict:
    """LAION-400M from the largest measured size. Assumptions are written next to the numbers."""
    r = max(results, key=lambda x: x["vectors"])
    nlist = 65536  # faiss guidance for 1e8..1e9 vectors: 2^16 lists, with an HNSW coarse quantiser to keep assignment cheap
    measured_nlist = int(r["factory"].split(",")[0][3:].split("_")[0])
    refine = "Refine(SQfp16)" in r["factory"]
    factory = f"IVF{nlist}_HNSW32,PQ{pq}" + (",Refine(SQfp16)" if refine else "")
    per_vec = pq + 8 + (2 * DIM if refine else 0)  # PQ code + int64 id in the inverted lists (+ float16 re-rank codes)
    bytes_ = LAION * per_vec + nlist * DIM * 4 * 2  # codes+ids, centroids (flat copy + HNSW storage)
    add_per_vec_s = r["build_s"] / r["vectors"]
    list_len_measured = r["vectors"] / measured_nlist
    list_len_laion = LAION / nlist
    return {
        "vectors": LAION,
        "factory": factory,
        "index_bytes": int(bytes_),
        "build_s_this_machine": round(add_per_vec_s * LAION, 0),
        "queries_per_s_this_machine": round(r["queries_per_s"] * list_len_measured / list_len_laion, 1),
        "assumptions": (
            "index bytes = 400M x (PQ code + 8-byte id + float16 re-rank codes) + centroids; the re-rank codes (400 GB) "
            "could stay on disk beside LAION's own float16 embeddings; build = build time per vector at the largest size "
            "x 400M (HNSW quantiser keeps per-vector assignment roughly constant as nlist grows); QPS scales inversely "
            f"with the inverted-list length scanned per probe ({list_len_measured:.0f} measured vs {list_len_laion:.0f} "
            "at 400M) at the same nprobe, which holds only if neighbours stay as concentrated in lists as measured; "
            "2-core CPU, so a 16-core node divides build time roughly by 8"
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1M,10M", help="comma-separated vector counts, e.g. 100k,1M,10M")
    p.add_argument("--quick", action="store_true", help="one small size (100k) as a smoke test")
    p.add_argument("--pq", type=int, default=64, help="PQ bytes per vector assumed for the LAION extrapolation")
    p.add_argument("--bytes-per-vector", type=float, default=1200.0,
                   help="memory budget per vector given to genbench's factory choice (float32 exact search: 2048)")
    p.add_argument("--factory", default=None, help="a faiss factory instead of genbench's choice for the budget")
    p.add_argument("--recall-target", type=float, default=0.95)
    p.add_argument("--tmp", default=None, help="directory for the index files (default: the system temp dir)")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--recall-queries", type=int, default=200)
    p.add_argument("--chunk", type=int, default=250_000)
    p.add_argument("--max-train", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = [100_000] if args.quick else [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    results = [run_size(n, args) for n in sizes]
    print(
        json.dumps(
            {
                "benchmark": "knn",
                "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, no GPU, faiss {faiss.__version__}, omp threads {faiss.omp_get_max_threads()}",
                "dim": DIM,
                "sizes": results,
                "laion400m_extrapolation": extrapolate(results, args.pq),
            }
        )
    )


if __name__ == "__main__":
    main()
