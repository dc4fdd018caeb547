"""The engine's own cost per sample: samples/s through Ray dispatch versus the same shard work done in-process.

For each case (generator null or tiny, CLIP tiny or none, 1 or 2 workers):
  pure_s    = sum of ShardProcessor.run(task) over the collection's shards, in this process, models already loaded;
  engine_s  = coll.build(...) on a warm WorkerPool (actors started, models loaded by a warm-up shard elsewhere);
  overhead  = (engine_s - pure_s / workers) / samples   (ms per sample; target <= 1 ms)
With 2 workers on 2 cores the ideal is pure_s / 2, so that figure also carries any loss of parallelism (and, on a busy
machine, other load). Cold start (Ray actors + model load) is reported apart as startup_s.

    python benchmarks/orchestration.py            # 2,000 null samples per case, 200 tiny
    python benchmarks/orchestration.py --quick    # 400 null, 40 tiny

Ends by printing one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TQDM_DISABLE", "1")

from genbench.config import parse_config  # noqa: E402

log = logging.getLogger("benchmarks.orchestration")


def make_cfg(generator: str, clip: str | None, samples: int, shard_size: int, seed: int):
    src = {"source": "generated", "generator": generator, "strategies": ["st"], "shots": samples // 10,
           "resolution": 32, "steps": 2, "guidance_scale": 3.0, "batch_size": 10}
    cfg = parse_config({"name": "orch", "datasets": ["digits"], "clip": clip or "tiny", "seed": seed,
                        "shard_size": shard_size, "sources": [src]})
    return cfg if clip else dataclasses.replace(cfg, clip=None)


def pure_work(cfg, root: str) -> float:
    """Seconds for this process to run every shard of ``cfg`` through ShardProcessor.run, models warmed first."""
    from genbench.engine.plan import plan_collection
    from genbench.engine.preflight import plan_jobs
    from genbench.engine.processor import ShardProcessor

    proc = ShardProcessor(threads=1)  # one core, as one worker actor gets
    warm = plan_collection(plan_jobs(dataclasses.replace(cfg, seed=cfg.seed + 1000), os.path.join(root, "warm"))[0].job)
    proc.run(warm[0])
    tasks = plan_collection(plan_jobs(cfg, os.path.join(root, "pure"))[0].job)
    t0 = time.perf_counter()
    for task in tasks:
        proc.run(task)
    return time.perf_counter() - t0


def engine_work(cfg, root: str, workers: int) -> tuple[float, float]:
    """(startup_s, engine_s): a fresh pool warmed with one shard per actor, then the collection through coll.build."""
    from genbench.engine import collections as coll
    from genbench.engine.dispatch import WorkerPool
    from genbench.engine.plan import plan_collection
    from genbench.engine.preflight import plan_jobs

    t0 = time.perf_counter()
    pool = WorkerPool(workers, None, 1.0)
    try:
        warm_job = plan_jobs(dataclasses.replace(cfg, seed=cfg.seed + 2000), os.path.join(root, f"warm{workers}"))[0].job
        warm = plan_collection(warm_job)
        # One warm-up shard per actor (in flight 1 each), so every actor has loaded its models.
        out = pool.map("run", [(t.label, (t,)) for t in warm[:workers]], lambda *_: None, max_in_flight=1)
        assert not out.failed, out.failed
        startup = time.perf_counter() - t0
        states = [coll.prepare(p, cfg.clip_slug, "size") for p in plan_jobs(cfg, os.path.join(root, f"engine{workers}"))]
        wall = coll.build(states, pool, max_in_flight=2, max_retries=2, progress=False)
        assert not any(s.failed for s in states)
    finally:
        pool.close()
    return startup, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=2000, help="samples per null case")
    ap.add_argument("--tiny-samples", type=int, default=200, help="samples per tiny-generator case")
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.samples, args.tiny_samples, args.shard_size = 400, 40, 20
    from genbench.engine.dispatch import init_ray, shutdown_ray

    root = tempfile.mkdtemp(prefix="gb-orch-", dir="/tmp")
    cases = []
    try:
        init_ray(num_cpus=2)
        plan = [("null", None, args.samples), ("null", "tiny", args.samples), ("tiny", "tiny", args.tiny_samples)]
        for i, (gen, clip, n) in enumerate(plan):
            cfg = make_cfg(gen, clip, n, args.shard_size, seed=i)
            pure = pure_work(cfg, os.path.join(root, f"case{i}"))
            for workers in (1, 2):
                startup, wall = engine_work(cfg, os.path.join(root, f"case{i}"), workers)
                overhead_ms = (wall - pure / workers) / n * 1000
                case = {"generator": gen, "clip": clip, "workers": workers, "samples": n,
                        "pure_s": round(pure, 3), "engine_s": round(wall, 3), "startup_s": round(startup, 2),
                        "samples_per_s": round(n / wall, 1), "pure_samples_per_s": round(n / pure, 1),
                        "overhead_ms_per_sample": round(overhead_ms, 3)}
                log.warning("%s", case)
                cases.append(case)
                shutil.rmtree(os.path.join(root, f"case{i}", f"engine{workers}"), ignore_errors=True)
    finally:
        shutdown_ray()
        shutil.rmtree(root, ignore_errors=True)
    one_worker_null = [c for c in cases if c["generator"] == "null" and c["workers"] == 1]
    print(json.dumps({
        "benchmark": "orchestration",
        "shard_size": args.shard_size,
        # The headline: the engine's cost per sample at 1 worker (no parallelism to lose), worst null case.
        "overhead_ms_per_sample": max(c["overhead_ms_per_sample"] for c in one_worker_null),
        "cases": cases,
    }))


if __name__ == "__main__":
    main()
