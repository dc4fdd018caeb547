"""How long `genbench plan` takes on every config under configs/paper/ (the issue's "runs in seconds"), and what it
imports: each plan is a fresh `python -m genbench.cli plan CONFIG --json` process, as a user runs it.

- per_config_s: median wall seconds per config over ``--repeat`` runs; max_s: the slowest config.
- images: the images each config would make (from the plan's JSON), so a change in planning shows up here too.
- imports_model_libs: whether any plan process imported torch, open_clip, diffusers or ray (it must import none).

    python benchmarks/plan.py [--repeat 3]

Ends by printing one JSON line.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PROBE = (
    "import runpy, sys, json\n"
    "sys.argv = ['genbench'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('genbench.cli', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "heavy = sorted(m for m in ('torch', 'open_clip', 'diffusers', 'ray') if m in sys.modules)\n"
    "sys.stderr.write('HEAVY ' + json.dumps(heavy) + '\\n')\n"
)


def _plan(config: str) -> tuple[float, dict, list[str]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": REPO}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PROBE, "plan", config, "--json"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"plan {config} exited {proc.returncode}: {proc.stderr[-500:]}")
    heavy = next((json.loads(line[6:]) for line in proc.stderr.splitlines() if line.startswith("HEAVY ")), [])
    return wall, json.loads(proc.stdout), heavy


def _images(plan: dict) -> int | None:
    for key in ("images", "total_images"):
        if isinstance(plan.get(key), int):
            return plan[key]
    totals = plan.get("totals") or plan.get("total") or {}
    return totals.get("images") if isinstance(totals, dict) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    configs = sorted(glob.glob(os.path.join(REPO, "configs", "paper", "*.yaml")))
    per, images, heavy_any = {}, {}, set()
    for config in configs:
        name = os.path.basename(config)
        walls = []
        for _ in range(max(1, args.repeat)):
            wall, plan, heavy = _plan(config)
            walls.append(wall)
            heavy_any.update(heavy)
        per[name] = round(statistics.median(walls), 3)
        images[name] = _images(plan)
    print(json.dumps({"configs": len(configs), "per_config_s": per, "max_s": max(per.values()), "images": images,
                      "imports_model_libs": sorted(heavy_any)}))


if __name__ == "__main__":
    main()
