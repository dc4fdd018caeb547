"""`ray job submit` against a real Ray head on 127.0.0.1, as a cluster user would run the quickstart.

The head runs under its own process session (setsid), so the test can stop it and every process it spawned by
signalling the process group; Ray 2.60's head turns on token auth, so the client sets RAY_AUTH_MODE=token.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(proc: subprocess.Popen) -> None:
    # `ray start --block` leaves gcs_server/raylet running on SIGTERM: signal the whole group, then make sure.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + 5
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.fixture
def ray_head(tmp_path):
    port, dash = _free_port(), _free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}
    log = open(tmp_path / "head.log", "w")
    ray_tmp = tempfile.mkdtemp(prefix="gbray-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    proc = subprocess.Popen(
        [os.path.join(BIN, "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2",
         # The agent's default port (52365) is taken by any other local Ray on the machine, e.g. the test session's
         # embedded cluster; without an agent the head answers "No available agent to submit job".
         "--dashboard-agent-listen-port", str(_free_port()), "--dashboard-agent-grpc-port", str(_free_port()),
         "--temp-dir", ray_tmp],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    client_env = {**env, "RAY_AUTH_MODE": "token"}
    try:
        deadline = time.time() + 120
        while True:
            ok = subprocess.run([os.path.join(BIN, "ray"), "job", "list", "--address", address], env=client_env,
                                capture_output=True, timeout=60).returncode == 0
            if ok:
                break
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("ray head did not come up: " + (tmp_path / "head.log").read_text()[-2000:])
            time.sleep(2)
        yield address, client_env
    finally:
        _stop_group(proc)
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_ray_job_submit_runs_a_config(ray_head, tmp_path):
    address, env = ray_head
    cfg = {
        "name": "job",
        "datasets": ["digits"],
        "clip": "tiny",
        "shard_size": 20,
        "sources": [
            {"source": "generated", "generator": "tiny", "strategies": ["st"], "shots": 2, "steps": 2, "batch_size": 10,
             "image_size": 32},
            {"source": "original", "shots": [1, 2]},
        ],
        "engine": {"workers": 2},
    }
    cfg_path = tmp_path / "job.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    runtime_env = {"excludes": [".venv", ".git", "shards", "out", ".cache", "*.egg-info", ".pytest_cache"]}
    cmd = [os.path.join(BIN, "ray"), "job", "submit", "--address", address, "--working-dir", REPO,
           "--runtime-env-json", json.dumps(runtime_env), "--", "python", "ray_jobs/run.py", str(cfg_path), "--out", str(out)]
    for _ in range(10):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)
        # The dashboard answers before the head's job agent has registered; Ray says so and asks to retry.
        if proc.returncode == 0 or "No available agent" not in proc.stdout + proc.stderr:
            break
        time.sleep(3)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in (proc.stdout + proc.stderr).lower()
    records = json.loads((out / "results.json").read_text())
    assert {(r["source"], r["shots"]) for r in records} == {("generated", 2), ("original", 1), ("original", 2)}
    assert all(r["scores"]["cler"] >= 0 for r in records)
    assert (out / "shards" / "digits" / "generated" / "tiny_st_steps2_bs10_px32_s0" / "000000.tar").exists()
