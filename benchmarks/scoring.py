"""Scoring speed on synthetic embedding sidecars at ImageNet scale (1,000 classes x 500 shots, 50,000 test, 512-d).

Writes the sidecar parquet files (key, cls, embedding) in the shard layout's shot-major order to a temporary directory,
then times:
- CLER end to end from the sidecar files: read, per-class sums, centroids, test @ centroids.T, argmax, accuracy;
- CLER from the collection's persisted class sums, as `genbench score` reads them: the totals file the manifest
  names (``cler_collection_s``), and the per-shard sums files a resumed run or a prefix reads (``cler_shard_sums_s``);
- the linear probe at one fixed reg in torch (genbench's path solver, float32) and in scikit-learn (LogisticRegression
  lbfgs, the same objective via C = 1 / (reg n)) on the same data (--probe-shots per class);
- the full regularisation search (coarse grid + refinement + final fit) with each fitter, in the same run: genbench's
  (one solver walking the path, warm starts) and scikit-learn's (each strength from scratch), and the ratio;
- the Fréchet distance at 512 and 2,048 dimensions (50,000 x D features each side).

Ends with one JSON line. ``--quick`` runs a small size in seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from genbench.metrics.cler import centroids, cler_logits
from genbench.metrics.frechet import frechet_distance_features
from genbench.metrics.probe import fit_logreg, grad_scale, linear_probe, search_reg, stratified_split
from genbench.metrics.task import score, score_linear
from genbench.shards.classsums import collection_sums, read_totals, write_shard_sums, write_totals
from genbench.shards.layout import Layout, shard_name
from genbench.shards.schema import sample_key
from genbench.shards.reader import sidecar_class_sums
from genbench.shards.sidecar import to_parquet_bytes
from genbench.shards.store import Store

log = logging.getLogger("benchmarks.scoring")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_data(classes: int, shots: int, test: int, dim: int, files: int, noise: float, seed: int, out: Path):
    """Write sidecars under ``out/emb/synthetic/`` and return (test_x, test_y, class means)."""
    rng = np.random.default_rng(seed)
    means = _unit(rng.standard_normal((classes, dim), dtype=np.float32))
    total = classes * shots
    layout = Layout(num_classes=classes, shard_size=-(-total // files))
    emb_dir = out / "emb" / "synthetic"
    emb_dir.mkdir(parents=True)
    store, records = Store(str(out)), []
    fixed = np.zeros((classes, dim), dtype=np.int64)
    counts = np.zeros(classes, dtype=np.int64)
    for shard in range(layout.num_shards(shots)):
        start = shard * layout.shard_size
        pos = np.arange(start, min(start + layout.shard_size, total))
        cls, shot = pos % classes, pos // classes
        emb = _unit(means[cls] + noise * rng.standard_normal((len(pos), dim), dtype=np.float32))
        keys = [sample_key(c, s) for c, s in zip(cls.tolist(), shot.tolist())]
        (emb_dir / f"{shard_name(shard)}.parquet").write_bytes(to_parquet_bytes(keys, cls, emb))
        # What a worker commits beside the sidecar, and the driver's running totals (genbench.shards.classsums).
        entry, (ids, c, f) = write_shard_sums(store, shard_name(shard), "synthetic", cls, emb, classes)
        fixed[ids] += f
        counts[ids] += c
        records.append({"shard": shard_name(shard), "sha256": "-", "slot_stop": int(pos[-1]) + 1,
                        "class_sums": {"synthetic": entry}})
    manifest = {"class_sums": {"synthetic": write_totals(store, "synthetic", records, fixed, counts)}}
    test_y = rng.integers(0, classes, size=test)
    test_x = _unit(means[test_y] + noise * rng.standard_normal((test, dim), dtype=np.float32))
    return test_x.astype(np.float32), test_y, layout, (manifest, records)


def probe_data(classes: int, shots: int, dim: int, noise: float, alpha: float, seed: int):
    """(train x, train y, test x, test y): unit vectors of class means plus Gaussian noise whose variance follows a
    power law of exponent ``alpha`` in a random basis (CLIP features' variance sits in a few directions); 10 test per
    class."""
    rng = np.random.default_rng(seed + 1)
    means = _unit(rng.standard_normal((classes, dim), dtype=np.float32))
    spec = np.arange(1, dim + 1, dtype=np.float64) ** (-alpha / 2)
    spec = (spec * np.sqrt(dim / (spec**2).sum())).astype(np.float32)
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)

    def draw(y):
        g = rng.standard_normal((len(y), dim), dtype=np.float32) * spec
        return _unit(means[y] + noise * g @ basis).astype(np.float32)

    y, ty = np.tile(np.arange(classes), shots), np.tile(np.arange(classes), 10)
    return draw(y), y, draw(ty), ty


def sklearn_fit(x, y, reg: float, tol: float, max_iter: int, classes: int):
    """scikit-learn's LogisticRegression (lbfgs) on the probe's objective: C = 1 / (reg n). Its ``tol`` bounds the
    gradient's max-norm absolutely: it gets ``tol`` times that norm at zero, the relative meaning the torch rule has."""
    import torch
    from sklearn.linear_model import LogisticRegression

    sk_tol = tol * grad_scale(torch.as_tensor(x), torch.as_tensor(y), classes, False)
    return LogisticRegression(C=1.0 / (reg * len(x)), max_iter=max_iter, tol=sk_tol).fit(x, y)


def sklearn_search(x, y, tx, ty, classes: int, tol: float, max_iter: int) -> tuple[float, float, int]:
    """genbench's search protocol with scikit-learn as the fitter, as a user would run it (each strength from scratch):
    the same validation split, coarse grid and bracket halving (``search_reg``), then a refit on all the data at the
    chosen strength. Returns (reg, test accuracy, fits)."""
    tr, va = stratified_split(y, 0.2, 0)
    scores: dict[float, float] = {}

    def searcher(log_reg: float) -> float:
        log_reg = round(log_reg, 6)
        if log_reg not in scores:
            model = sklearn_fit(x[tr], y[tr], 10.0**log_reg, tol, max_iter, classes)
            scores[log_reg] = model.score(x[va], y[va])
        return scores[log_reg]

    best = search_reg(searcher)
    model = sklearn_fit(x, y, 10.0**best, tol, max_iter, classes)
    return 10.0**best, model.score(tx, ty) * 100, len(scores) + 1


def time_cler(root: Path, layout: Layout, shots: int, test_x: np.ndarray, test_y: np.ndarray) -> tuple[float, float]:
    """CLER through the product's own path: genbench's sidecar reader and fixed-point class sums, then scoring."""
    t0 = time.perf_counter()
    shards = [(shard_name(i), min((i + 1) * layout.shard_size, shots * layout.num_classes)) for i in range(layout.num_shards(shots))]
    sums, counts = sidecar_class_sums(Store(str(root)), shards, "synthetic", layout.num_classes)
    cents = centroids(sums, counts)
    acc = score("accuracy", test_y, cler_logits(test_x, cents))
    return time.perf_counter() - t0, acc


def time_cler_sums(root: Path, collection: tuple, classes: int, test_x: np.ndarray, test_y: np.ndarray
                   ) -> tuple[float, float, float]:
    """CLER through `genbench score`'s path on persisted sums: the collection's totals (one file), then the same from
    every shard's sums file (a resumed run's reading); returns (totals seconds, shard-sums seconds, accuracy)."""
    manifest, records = collection
    t0 = time.perf_counter()
    sums, counts = read_totals(Store(str(root)), manifest, records, "synthetic", classes)
    acc = score_linear("accuracy", test_y, test_x, centroids(sums, counts))
    totals_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    shards = [(r["shard"], r["slot_stop"], r) for r in records]
    sums2, counts2 = collection_sums(Store(str(root)), shards, "synthetic", classes)
    acc2 = score_linear("accuracy", test_y, test_x, centroids(sums2, counts2))
    shard_s = time.perf_counter() - t0
    assert acc2 == acc and np.array_equal(sums, sums2)  # the same exact sums either way
    return totals_s, shard_s, acc


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 classes x 50 shots, 5,000 test: seconds")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--shots", type=int, default=500)
    ap.add_argument("--test", type=int, default=50000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--noise", type=float, default=0.25, help="per-dimension noise around the class mean (~75%% oracle)")
    ap.add_argument("--probe-shots", type=int, default=10, help="shots per class for the probes and the search")
    ap.add_argument("--probe-noise", type=float, default=0.15, help="noise scale of the probe data")
    ap.add_argument("--probe-alpha", type=float, default=1.0, help="power-law exponent of the probe noise's spectrum")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and BLAS threads for both probes (1 avoids spin-wait collapse on an oversubscribed machine)",
    )
    ap.add_argument("--reg", type=float, default=1e-4, help="the fixed regularisation of the probe comparison")
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--tol", type=float, default=1e-4, help="gradient tolerance relative to |grad| at zero, both probes")
    ap.add_argument("--fd-n", type=int, default=50000, help="features per side for the Fréchet distance")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.classes, args.shots, args.test, args.files, args.probe_shots, args.fd_n = 100, 50, 5000, 10, 10, 5000
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch
    from threadpoolctl import threadpool_limits

    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)

    gpu = "cuda" if torch.cuda.is_available() else "no GPU"
    out: dict = {"machine": f"{platform.machine()}, torch threads {torch.get_num_threads()}, {gpu}"}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        test_x, test_y, layout, collection = make_data(
            args.classes, args.shots, args.test, args.dim, args.files, args.noise, args.seed, Path(tmp)
        )
        paths = sorted((Path(tmp) / "emb" / "synthetic").glob("*.parquet"))
        log.info("wrote %d sidecar files in %.1fs", len(paths), time.perf_counter() - t0)

        cler_s, cler_acc = time_cler(Path(tmp), layout, args.shots, test_x, test_y)
        log.info("CLER from %d sidecars: %.2fs, accuracy %.2f", len(paths), cler_s, cler_acc)
        time_cler_sums(Path(tmp), collection, args.classes, test_x[:100], test_y[:100])  # warm-up: torch's threads
        cler_sums = min((time_cler_sums(Path(tmp), collection, args.classes, test_x, test_y) for _ in range(3)),
                        key=lambda t: t[0])
        log.info("CLER from the collection's class sums: %.3fs (totals), %.3fs (%d shard sums files), accuracy %.2f",
                 cler_sums[0], cler_sums[1], len(paths), cler_sums[2])

        # The probe data (not the sidecars: their isotropic noise gives a flat validation curve, on which the choice of
        # strength is a coin toss): class means plus anisotropic noise, a power-law spectrum in a random basis.
        px, py, ptx, pty = probe_data(args.classes, args.probe_shots, args.dim, args.probe_noise, args.probe_alpha,
                                      args.seed)
        log.info("probe data: %d samples (%d shots x %d classes), test %d", len(px), args.probe_shots, args.classes, len(ptx))

        fit_logreg(px[:200], py[:200], args.classes, 1.0, device="cpu", max_iter=5)  # warm-up: thread pools, kernels
        t0 = time.perf_counter()
        w, b = fit_logreg(px, py, args.classes, args.reg, device="cpu", max_iter=args.max_iter, tol=args.tol)
        probe_torch_s = time.perf_counter() - t0
        acc_torch = score("accuracy", pty, ptx @ w.T + b)
        log.info("torch probe: %.1fs, accuracy %.2f", probe_torch_s, acc_torch)

        t0 = time.perf_counter()
        model = sklearn_fit(px, py, args.reg, args.tol, args.max_iter, args.classes)
        probe_sklearn_s = time.perf_counter() - t0
        acc_sk = model.score(ptx, pty) * 100
        log.info("sklearn probe: %.1fs, accuracy %.2f (%d iterations)", probe_sklearn_s, acc_sk, int(model.n_iter_.max()))

        t0 = time.perf_counter()
        result = linear_probe(
            px, py, ptx, pty, args.classes, "accuracy", device="cpu", max_iter=args.max_iter, tol=args.tol
        )
        search_s = time.perf_counter() - t0
        log.info("reg search: %.1fs, %d fits, reg %.3g, test accuracy %.2f", search_s, len(result.search) + 1, result.reg, result.score)
        t0 = time.perf_counter()
        sk_reg, sk_acc, sk_fits = sklearn_search(px, py, ptx, pty, args.classes, args.tol, args.max_iter)
        sk_search_s = time.perf_counter() - t0
        log.info("scikit-learn search: %.1fs, %d fits, reg %.3g, test accuracy %.2f", sk_search_s, sk_fits, sk_reg, sk_acc)

        fd = {}
        for d in (512, 2048):
            rng = np.random.default_rng(d)
            a = _unit(rng.standard_normal((args.fd_n, d), dtype=np.float32))
            bb = _unit(rng.standard_normal((args.fd_n, d), dtype=np.float32) + 0.05)
            t0 = time.perf_counter()
            val = frechet_distance_features(a, bb)
            fd[d] = time.perf_counter() - t0
            log.info("Fréchet distance at %d-d (%d per side): %.2fs (FD %.4f)", d, args.fd_n, fd[d], val)

    out.update(
        size=f"{args.classes}x{args.shots} train, {args.test} test, {args.dim}-d, {len(paths)} files",
        probe_size=f"{len(px)} train ({args.probe_shots} shots) x {args.classes} classes, reg {args.reg:g}",
        cler_s=round(cler_s, 3),
        cler_acc=round(cler_acc, 2),
        cler_collection_s=round(cler_sums[0], 3),
        cler_shard_sums_s=round(cler_sums[1], 3),
        cler_sums_acc=round(cler_sums[2], 2),
        probe_torch_s=round(probe_torch_s, 2),
        probe_sklearn_s=round(probe_sklearn_s, 2),
        probe_speedup=round(probe_sklearn_s / probe_torch_s, 2),
        probe_acc_torch=round(acc_torch, 2),
        probe_acc_sklearn=round(acc_sk, 2),
        probe_acc_delta=round(acc_torch - acc_sk, 3),
        search_s=round(search_s, 2),
        search_fits=len(result.search) + 1,
        search_reg=result.reg,
        search_acc=round(result.score, 2),
        sklearn_search_s=round(sk_search_s, 2),
        sklearn_search_reg=sk_reg,
        sklearn_search_acc=round(sk_acc, 2),
        search_speedup=round(sk_search_s / search_s, 2),
        search_reg_decades_apart=round(abs(math.log10(result.reg / sk_reg)), 3),
        search_acc_delta=round(result.score - sk_acc, 3),
        fd512_s=round(fd[512], 3),
        fd2048_s=round(fd[2048], 3),
    )
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
