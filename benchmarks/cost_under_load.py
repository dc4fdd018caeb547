"""Does a collection's cost per image depend on what else the machine is doing?

The same generation (the tiny diffusers pipeline, CPU) runs twice with ``genbench generate``, each into its own output
directory: once on an idle machine and once while ``--hogs`` busy processes (pure-Python loops, one per core by default)
compete for the CPUs. Each collection's manifest states its cost; a CPU worker's cost is the CPU time its process
spent on the shards, so the two runs should agree although the loaded run takes longer.

- wall_s: the command's wall time; usd_per_image and cpu_seconds: from the collection's manifest (``cost``).
- ratio: loaded / idle cost per image (1.0 = the load did not change the cost).

    python benchmarks/cost_under_load.py [--shots N] [--hogs N]

Ends by printing one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.path.dirname(sys.executable), "genbench")


def _hog(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def _generate(out: str, shots: int) -> dict:
    cmd = [BIN, "--no-progress", "generate", "--dataset", "digits", "--generator", "tiny", "--shots", str(shots),
           "--clip", "tiny", "--out", out]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    (coll,) = [os.path.join(d, "manifest.json") for d, _, names in os.walk(out) if "manifest.json" in names]
    with open(coll) as f:
        cost = json.load(f)["cost"]
    return {"wall_s": round(wall, 2), "usd_per_image": cost["usd_per_image"], "cpu_seconds": round(cost["cpu_seconds"], 3),
            "images": cost["images"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=8, help="images per class (digits: 10 classes; default %(default)s)")
    ap.add_argument("--hogs", type=int, default=os.cpu_count() or 2,
                    help="busy processes during the loaded run (default: one per core, %(default)s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _generate(os.path.join(tmp, "warm"), 1)  # tiny models built and cached before anything is timed
        idle = _generate(os.path.join(tmp, "idle"), args.shots)
        stop_at = time.time() + 3600
        hogs = [mp.Process(target=_hog, args=(stop_at,), daemon=True) for _ in range(args.hogs)]
        for h in hogs:
            h.start()
        try:
            loaded = _generate(os.path.join(tmp, "loaded"), args.shots)
        finally:
            for h in hogs:
                h.terminate()
                h.join()
    ratio = loaded["usd_per_image"] / idle["usd_per_image"] if idle["usd_per_image"] else float("nan")
    print(json.dumps({"benchmark": "cost_under_load", "shots": args.shots, "hogs": args.hogs, "idle": idle,
                      "loaded": loaded, "ratio": round(ratio, 3), "machine_cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
