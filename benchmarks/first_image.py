"""Start-to-first-image: wall seconds from launching `genbench run CONFIG` to the first committed shard (its stats
record, written last, exists), on an embedded cluster and on a warm one (a Ray head already running on loopback,
joined through RAY_ADDRESS; models already built in the cache).

Each run writes to a fresh output directory, so every run makes every shard; the model cache is shared and warmed
by one untimed run first. A timed run is interrupted (SIGINT) once its first shard is committed unless ``--whole``. The head runs in its own session (setsid) and is stopped with its whole process group.

    python benchmarks/first_image.py                     # configs/quickstart.yaml, 3 runs per mode
    python benchmarks/first_image.py --config C --repeat 5

Ends by printing one JSON line: per mode the median seconds to the first shard (and with ``--whole`` to the end).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_run(config: str, env: dict[str, str], whole: bool, poll_s: float = 0.02) -> dict[str, float]:
    """Seconds from launch to the first shard record under the output directory (and, with ``whole``, to the
    process's exit; otherwise the run is interrupted there, as a user would after seeing work start)."""
    out = tempfile.mkdtemp(prefix="gb-first-")
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen([os.path.join(BIN, "genbench"), "--no-progress", "run", config, "--out", out],
                                env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        first = None
        while proc.poll() is None:
            if first is None and glob.glob(os.path.join(out, "shards", "**", "stats", "*.json"), recursive=True):
                first = time.perf_counter() - t0
                if not whole:
                    os.killpg(proc.pid, signal.SIGINT)
                    proc.communicate(timeout=120)
                    return {"first_shard_s": first}
            time.sleep(poll_s)
        total = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"genbench run failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if first is None:
            raise SystemExit("the run ended without committing a shard while being watched")
        return {"first_shard_s": first, "run_s": total}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def start_head(env: dict[str, str], log_path: str) -> tuple[subprocess.Popen, str, str]:
    port = _free_port()
    ray_tmp = tempfile.mkdtemp(prefix="gbray-", dir="/tmp")  # Ray's socket paths must stay short
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [os.path.join(BIN, "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--include-dashboard", "false", "--num-cpus", str(os.cpu_count() or 2), "--temp-dir", ray_tmp],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 120
    # Ray 2.60's head turns on token auth: its clients, `ray status` included, say so.
    while subprocess.run([os.path.join(BIN, "ray"), "status", "--address", address], env={**env, "RAY_AUTH_MODE": "token"},
                         capture_output=True, timeout=60).returncode != 0:
        if proc.poll() is not None or time.time() > deadline:
            stop_head(proc, ray_tmp)
            raise SystemExit("ray head did not come up; see " + log_path)
        time.sleep(1)
    return proc, address, ray_tmp


def stop_head(proc: subprocess.Popen, ray_tmp: str) -> None:
    # `ray start --block` leaves gcs_server and raylet behind on SIGTERM: the whole group goes.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.time() + 5
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
    proc.wait(timeout=30)
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in ("first_shard_s", "run_s") if all(k in r for r in runs)]
    return {k: round(statistics.median(r[k] for r in runs), 2) for k in keys} | {
        "first_shard_s_all": [round(r["first_shard_s"], 2) for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.path.join(REPO, "configs", "quickstart.yaml"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--whole", action="store_true", help="let each timed run finish (else stop it at its first shard)")
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "TQDM_DISABLE": "1",
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    time_run(args.config, env, True)  # untimed: builds the models the config names into the shared cache
    embedded = [time_run(args.config, env, args.whole) for _ in range(args.repeat)]

    log_path = os.path.join(tempfile.gettempdir(), "gb-first-image-head.log")
    head, address, ray_tmp = start_head(env, log_path)
    try:
        joined = {**env, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token"}
        warm = [time_run(args.config, joined, args.whole) for _ in range(args.repeat)]
    finally:
        stop_head(head, ray_tmp)
    print(json.dumps({
        "benchmark": "first_image",
        "config": os.path.relpath(args.config, REPO),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU" if not shutil.which("nvidia-smi")
        else f"{platform.machine()}, {os.cpu_count()} CPUs, GPU",
        "embedded": _summary(embedded),
        "warm_cluster": _summary(warm),
        "repeat": args.repeat,
    }))


if __name__ == "__main__":
    main()
