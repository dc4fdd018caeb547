"""Download benchmark: images/s through genbench.sources.fetch.fetch_many against a loopback HTTP server, and where the
time goes (network incl. server, decode + verify, re-encode) plus the cost of the resize/re-encode step a shard writer adds.

The server (tests/http_server.py) runs in a separate process so that its Python threads do not share our GIL.

Usage::

    python benchmarks/download.py                 # 3000 JPEGs, 16 threads
    python benchmarks/download.py --quick         # 300 JPEGs

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import multiprocessing as mp
import os
import platform
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for tests.http_server

from genbench.retrieval.fetch import FetchPolicy, failure_counts, fetch_many  # noqa: E402

log = logging.getLogger("benchmarks.download")


def make_jpeg(i: int, size: int) -> bytes:
    rng = np.random.default_rng(i)
    # smooth gradients plus noise: compresses like a photo, not like white noise
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([(xx * (i % 7 + 1)) % 256, (yy * (i % 5 + 1)) % 256, ((xx + yy) * 2) % 256], -1)
    img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(img).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _serve(n: int, size: int, queue: mp.Queue, stop: mp.Event) -> None:
    from tests.http_server import Route, serve

    routes = {f"/img/{i:06d}.jpg": Route(body=make_jpeg(i, size)) for i in range(n)}
    total = sum(len(r.body) for r in routes.values())
    with serve(routes) as base:
        queue.put((base, total))
        stop.wait()


def resize_reencode(data: bytes, side: int) -> bytes:
    """What a shard writer's resize step does: decode, shorter side to ``side``, JPEG quality 95."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    s = side / min(w, h)
    img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=95)
    return out.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--size", type=int, default=256, help="side of the served square JPEGs")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--resize", type=int, default=224, help="shorter side for the resize/re-encode measurement")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    n = 300 if args.quick else args.images

    ctx = mp.get_context("spawn")
    queue, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(n, args.size, queue, stop), daemon=True)
    server.start()
    try:
        base, served_bytes = queue.get(timeout=600)
        urls = [f"{base}/img/{i:06d}.jpg" for i in range(n)]
        policy = FetchPolicy(timeout_s=10, allow_networks=("127.0.0.0/8",))
        fetch_many(urls[:20], policy, max_workers=4)  # warm-up: imports, first connections
        t0 = time.perf_counter()
        results = fetch_many(urls, policy, max_workers=args.workers)
        wall = time.perf_counter() - t0
    finally:
        stop.set()
        server.join(timeout=10)

    ok = [r for r in results if r.ok]
    net, dec, enc = (sum(getattr(r, f) for r in results) for f in ("network_s", "decode_s", "encode_s"))
    busy = net + dec + enc
    sample = [r.data for r in ok[: min(300, len(ok))]]
    t1 = time.perf_counter()
    for d in sample:
        resize_reencode(d, args.resize)
    resize_per_image = (time.perf_counter() - t1) / max(1, len(sample))
    out = {
        "benchmark": "download",
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, no GPU",
        "images": n,
        "image_side": args.size,
        "mean_bytes": round(served_bytes / n),
        "workers": args.workers,
        "ok": len(ok),
        "kinds": failure_counts(results),
        "wall_s": round(wall, 2),
        "images_per_s": round(len(ok) / wall, 1),
        "mb_per_s": round(served_bytes / wall / 1e6, 2),
        "thread_time_share": {
            "network": round(net / busy, 3),
            "decode_verify": round(dec / busy, 3),
            "reencode": round(enc / busy, 3),
        },
        "per_image_ms": {
            "network": round(1000 * net / n, 2),
            "decode_verify": round(1000 * dec / n, 2),
            "reencode": round(1000 * enc / n, 3),
            "resize_reencode_224_single_thread": round(1000 * resize_per_image, 2),
        },
        "note": "network includes the loopback server's own CPU (same 2 cores); thread times overlap across workers, "
        "so shares are of summed thread time, not wall time; JPEG bytes are kept as served (re-encode ~0), the "
        "resize/re-encode figure is the extra cost a shard writer pays per image",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
