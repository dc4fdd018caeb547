"""A dead node: a Ray head and a second node on loopback (each `ray start` in its own process group), a run with one
worker on each, the second node killed whole (raylet and workers) mid-run. The run finishes on the head's worker and
every shard is byte-identical to an undisturbed run. Both nodes are stopped by process group at the end."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from genbench.config import parse_config
from genbench.engine.experiment import build_collections
from tests.helpers import sha

BIN = os.path.dirname(sys.executable)
SHOTS = 12  # 12 shards of 10 tiny-generator images: long enough to kill a node part-way
CFG = {"name": "nodes", "datasets": ["digits"], "clip": "tiny", "shard_size": 10,
       "sources": [{"source": "generated", "generator": "tiny", "shots": SHOTS, "steps": 2, "image_size": 32}]}
VARIANT = ("digits", "generated", "tiny_st_steps2_px32_s0")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ports() -> list[str]:
    # Every listening port of a node, chosen free: two raylets on one address must not ask for the same defaults.
    return ["--node-manager-port", str(_port()), "--object-manager-port", str(_port()),
            "--dashboard-agent-listen-port", str(_port()), "--dashboard-agent-grpc-port", str(_port()),
            "--metrics-export-port", str(_port()), "--runtime-env-agent-port", str(_port())]


def _group_alive(proc: subprocess.Popen) -> bool:
    proc.poll()  # reap the leader: a zombie would keep the group "alive"
    try:
        os.killpg(proc.pid, 0)
        return True
    except ProcessLookupError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """The node's whole process group: SIGTERM, up to 2 s for it to go, then SIGKILL for what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.time() + 2
        while time.time() < deadline and _group_alive(proc):
            time.sleep(0.1)
    proc.wait(timeout=60)


def _session(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[3])
    except OSError:
        return None


def _files(coll: str) -> dict[str, str]:
    out = {}
    for dirpath, _, names in os.walk(coll):
        for n in names:
            if n.endswith((".tar", ".parquet")):
                out[os.path.relpath(os.path.join(dirpath, n), coll)] = sha(os.path.join(dirpath, n))
    return out


@pytest.fixture
def two_nodes(tmp_path):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": "",
           # The GCS declares a silent node dead after 5 missed checks 3 s apart by default; a check every second
           # (each allowed 3 s, so a node starved of CPU by the rest of the suite is not declared dead) makes this
           # test wait seconds, not tens of seconds, for what a real cluster waits for the same way.
           "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "3000",
           "RAY_health_check_failure_threshold": "3"}
    gcs = _port()
    ray_tmp = tempfile.mkdtemp(prefix="gbnodes-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    base = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
    head = subprocess.Popen([os.path.join(BIN, "ray"), "start", "--head", "--port", str(gcs), "--include-dashboard",
                             "false", "--temp-dir", ray_tmp, *base, *_ports()], stdout=open(tmp_path / "head.log", "w"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    nodes = [head]
    try:
        address = f"127.0.0.1:{gcs}"
        client = {**env, "RAY_AUTH_MODE": "token"}
        deadline = time.time() + 120
        while subprocess.run([os.path.join(BIN, "ray"), "status", "--address", address], env=client,
                             capture_output=True, timeout=60).returncode != 0:
            assert head.poll() is None and time.time() < deadline, (tmp_path / "head.log").read_text()[-2000:]
            time.sleep(2)
        second = subprocess.Popen([os.path.join(BIN, "ray"), "start", "--address", address, *base, *_ports()],
                                  stdout=open(tmp_path / "node2.log", "w"), stderr=subprocess.STDOUT, env=client,
                                  start_new_session=True)
        nodes.append(second)
        probe = "import ray; ray.init(); print(len([n for n in ray.nodes() if n['Alive']]))"
        while True:
            got = subprocess.run([sys.executable, "-c", probe], env={**client, "RAY_ADDRESS": address},
                                 capture_output=True, text=True, timeout=120)
            if got.stdout.strip().endswith("2"):
                break
            assert second.poll() is None and time.time() < deadline + 120, (tmp_path / "node2.log").read_text()[-2000:]
            time.sleep(2)
        yield address, client, second
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        subprocess.run(["rm", "-rf", ray_tmp])


def test_a_run_survives_the_death_of_a_node(ray_local, two_nodes, tmp_path):
    address, env, second = two_nodes
    reference = os.path.join(str(tmp_path / "ref"), *VARIANT)
    build_collections(parse_config(copy.deepcopy(CFG)), str(tmp_path / "ref"), workers=2, progress=False)

    out = str(tmp_path / "out")
    coll = os.path.join(out, *VARIANT)
    argv = ["--no-progress", "generate", "--dataset", "digits", "--generator", "tiny", "--shots", str(SHOTS),
            "--steps", "2", "--image-size", "32", "--shard-size", "10", "--clip", "tiny", "--out", out,
            "--workers", "2", "--address", address]
    run = subprocess.Popen([os.path.join(BIN, "genbench"), *argv], env=env, stdout=subprocess.DEVNULL,
                           stderr=open(tmp_path / "run.log", "w"), start_new_session=True)
    try:
        # Wait until the second node's worker has committed a shard: its process belongs to that node's session.
        stats = os.path.join(coll, "stats")
        deadline = time.time() + 300
        while True:
            pids = [json.load(open(os.path.join(stats, n)))["pid"] for n in sorted(os.listdir(stats))] \
                if os.path.isdir(stats) else []
            if any(_session(p) == second.pid for p in pids):
                break
            assert run.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.time() < deadline, "no shard was made on the second node"
            time.sleep(0.2)
        done_before = len(pids)
        os.killpg(second.pid, signal.SIGKILL)  # the whole node: raylet, its workers, everything in its session
        assert run.wait(timeout=400) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=60)
    assert done_before < SHOTS, "the node must die part-way through"
    assert "died" in (tmp_path / "run.log").read_text()  # the driver saw the worker go and retried its shards
    manifest = json.load(open(os.path.join(coll, "manifest.json")))
    assert manifest["complete"] is True and manifest["samples"] == SHOTS * 10
    assert _files(coll) == _files(reference)
