"""Start-up cost of the command line: wall time of `genbench --help` and `genbench datasets`, what each imports, and the
driver's resident memory at the moment it would start Ray.

- help_s / datasets_s: median wall seconds of a fresh `python -m genbench.cli ...` process (``--repeat`` runs each).
- imports_torch: whether `genbench --help` imported torch / diffusers / ray (it should import none of them).
- rss_before_ray_mb: the `genbench run CONFIG` driver's resident set size (VmRSS) when it calls ``ray.init``: a
  wrapper replaces ``ray.init`` with a probe that reads /proc/self/status and ends the process, so nothing is built.

    python benchmarks/startup.py                      # the checkout this file is in
    python benchmarks/startup.py --code-dir OTHER     # another checkout's genbench (put first on PYTHONPATH)

Ends by printing one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROBE = r"""
import json, sys
import ray

def _probe(*args, **kwargs):
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    mods = sorted(m for m in ("torch", "diffusers", "open_clip", "transformers") if m in sys.modules)
    sys.stdout.write("PROBE " + json.dumps({"rss_kb": rss, "modules": mods}) + "\n")
    sys.stdout.flush()
    import os
    os._exit(0)

ray.init = _probe
from genbench.cli import main
main(sys.argv[1:])
"""

_IMPORTS = r"""
import sys
from genbench.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print("MODULES " + ",".join(sorted(m for m in ("torch", "diffusers", "open_clip", "transformers", "ray") if m in sys.modules)))
"""


def _env(code_dir: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "TQDM_DISABLE": "1"}
    env["PYTHONPATH"] = code_dir + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _wall(argv: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "genbench.cli", *argv], env=env, cwd=env["PYTHONPATH"].split(os.pathsep)[0],
                       capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code-dir", default=REPO, help="checkout whose genbench package is measured")
    ap.add_argument("--config", default=os.path.join(REPO, "configs", "quickstart.yaml"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    env = _env(os.path.abspath(args.code_dir))

    help_s = _wall(["--help"], env, args.repeat)
    datasets_s = _wall(["datasets"], env, args.repeat)
    code = os.path.abspath(args.code_dir)  # the working directory too: `python -c` puts it first on sys.path
    out = subprocess.run([sys.executable, "-c", _IMPORTS], env=env, cwd=code, capture_output=True, text=True,
                         check=True).stdout
    imported = next(line for line in out.splitlines() if line.startswith("MODULES ")).split(" ", 1)[1]

    rss = []
    for _ in range(max(1, args.repeat // 2)):
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run([sys.executable, "-c", _PROBE, "--no-progress", "run", args.config, "--out", tmp],
                                  env=env, cwd=code, capture_output=True, text=True, check=False)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")), None)
        if line is None:
            raise SystemExit(f"the driver never reached ray.init: {proc.stderr[-2000:]}")
        probe = json.loads(line.split(" ", 1)[1])
        rss.append(probe["rss_kb"] / 1024.0)

    commit = subprocess.run(["git", "-C", args.code_dir, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(json.dumps({
        "benchmark": "startup",
        "code": commit or args.code_dir,
        "help_s": round(help_s, 3),
        "datasets_s": round(datasets_s, 3),
        "help_imports": imported.split(",") if imported else [],
        "rss_before_ray_mb": round(statistics.median(rss), 1),
        "modules_before_ray": probe["modules"],
        "repeat": args.repeat,
    }))


if __name__ == "__main__":
    main()
