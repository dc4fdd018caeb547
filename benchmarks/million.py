"""A million-sample run through the engine: orchestration + JPEG encode + tar commit, no model, no CLIP.

The null generator makes 32x32 seeded-noise images for digits (10 classes x samples/10 shots), sharded at
``--shard-size``. Measured: wall time, shard count, the driver's peak RSS (sampled, this process only: Ray workers
are not counted), and how long a rerun takes to find every shard done (the engine's resume check, with sha256 and
with size verification). Outputs go under --out (default a fresh /tmp directory) and are deleted afterwards.

    python benchmarks/million.py                      # 1,000,000 samples, 100 shards
    python benchmarks/million.py --samples 100000     # the same at 100k, to show driver memory is flat
    python benchmarks/million.py --quick              # 20,000 samples, a smoke run

Ends by printing one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import shutil
import tempfile
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import psutil  # noqa: E402

from genbench.config import parse_config  # noqa: E402

log = logging.getLogger("benchmarks.million")


class PeakRSS:
    """Samples this process's resident set every ``every`` seconds; ``peak_mb`` is the largest seen."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak = every, 0
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.every)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def config(samples: int, shard_size: int, workers: int):
    shots = samples // 10
    cfg = parse_config({
        "name": "million", "datasets": ["digits"], "seed": 0, "shard_size": shard_size,
        "sources": [{"source": "generated", "generator": "null", "strategies": ["st"], "shots": shots, "resolution": 32}],
        "engine": {"workers": workers, "max_in_flight": 2},
    })
    return dataclasses.replace(cfg, clip=None)  # orchestration + encode + tar only, as `genbench generate --clip none`


def resume_check(cfg, root: str, verify: str) -> tuple[float, int]:
    """Seconds for the driver to plan the collection and confirm every shard done; returns (seconds, pending)."""
    from genbench.engine import collections as coll
    from genbench.engine.preflight import plan_jobs

    t0 = time.perf_counter()
    states = [coll.prepare(p, None, verify) for p in plan_jobs(cfg, root)]
    return time.perf_counter() - t0, sum(len(s.pending) for s in states)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--shard-size", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="20,000 samples in shards of 2,000")
    ap.add_argument("--out", help="output root (default: a new directory under /tmp, deleted at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the output")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.quick:
        args.samples, args.shard_size = 20_000, 2_000
    from genbench.engine.dispatch import init_ray, shutdown_ray
    from genbench.engine.experiment import build_collections

    root = args.out or tempfile.mkdtemp(prefix="gb-million-", dir="/tmp")
    cfg = config(args.samples, args.shard_size, args.workers)
    try:
        init_ray(num_cpus=args.workers)
        rss_before = psutil.Process().memory_info().rss / 2**20
        with PeakRSS() as rss:
            t0 = time.perf_counter()
            jobs = build_collections(cfg, root, workers=args.workers, progress=False)
            wall = time.perf_counter() - t0
        coll_dir = jobs[0].uri
        shards = sorted(f for f in os.listdir(coll_dir) if f.endswith(".tar"))
        nbytes = sum(os.path.getsize(os.path.join(coll_dir, f)) for f in shards)
        manifest = json.load(open(os.path.join(coll_dir, "manifest.json")))
        check = {v: resume_check(cfg, root, v) for v in ("size", "sha256")}
        assert all(pending == 0 for _, pending in check.values()), check
        t0 = time.perf_counter()
        build_collections(cfg, root, workers=args.workers, progress=False)  # a full rerun: finds all done, makes nothing
        rerun = time.perf_counter() - t0
        result = {
            "benchmark": "million",
            "samples": int(manifest["samples"]),
            "shards": len(shards),
            "shard_size": args.shard_size,
            "workers": args.workers,
            "image": "32x32 jpg (null generator)",
            "clip": None,
            "wall_s": round(wall, 2),
            "samples_per_s": round(manifest["samples"] / wall, 1),
            "bytes": nbytes,
            "driver_peak_rss_mb": round(rss.peak_mb, 1),
            "driver_rss_before_run_mb": round(rss_before, 1),
            "driver_ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "resume_check_s": {v: round(s, 3) for v, (s, _) in check.items()},
            "rerun_wall_s": round(rerun, 2),
        }
    finally:
        shutdown_ray()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
