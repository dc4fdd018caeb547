"""One run per collection: a second run on the same output fails naming the holder, or waits and then finds every
shard done; a lock left by a dead process is taken over; only dead writers' temporary files are swept."""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr

import pytest

from genbench.cli import main
from genbench.config import parse_config
from genbench.engine.experiment import build_collections
from genbench.shards.lock import LOCK
from genbench.shards.store import Store, host_name
from tests.helpers import snapshot

BIN = os.path.dirname(sys.executable)
CFG = {"name": "lock", "datasets": ["digits"], "clip": "tiny", "shard_size": 10,
       "sources": [{"source": "generated", "generator": "tiny", "shots": 8, "steps": 2, "image_size": 32}]}
VARIANT = ("digits", "generated", "tiny_st_steps2_px32_s0")


def _argv(out: str) -> list[str]:
    return ["--no-progress", "generate", "--dataset", "digits", "--generator", "tiny", "--shots", "8", "--steps", "2",
            "--image-size", "32", "--shard-size", "10", "--clip", "tiny", "--out", out, "--workers", "1"]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_second_run_fails_naming_the_holder_then_waits_and_finds_everything_done(ray_local, tmp_path, capsys):
    out = str(tmp_path / "out")
    coll = os.path.join(out, *VARIANT)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_ADDRESS": ""}
    first = subprocess.Popen([os.path.join(BIN, "genbench"), *_argv(out)], env=env, stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / "first.log", "w"), start_new_session=True)
    try:
        deadline = time.time() + 240
        while not os.path.exists(os.path.join(coll, LOCK)):
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
            assert time.time() < deadline, "the first run never took its lock"
            time.sleep(0.2)
        holder = json.load(open(os.path.join(coll, LOCK)))
        assert holder["pid"] == first.pid and holder["host"] == host_name()

        assert main(_argv(out)) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"pid {first.pid}" in err and "on_locked" in err

        cfg = parse_config({**copy.deepcopy(CFG), "engine": {"on_locked": "wait", "lock_wait_s": 300}})
        build_collections(cfg, out, workers=1, progress=False)  # returns once the first run let go
        assert first.wait(timeout=60) == 0
        done = snapshot(coll)
        assert sum(n.endswith(".tar") for n in done) == 8
        build_collections(cfg, out, workers=1, progress=False)
        assert snapshot(coll) == done  # the waiting run made nothing the first had made
        assert not os.path.exists(os.path.join(coll, LOCK))
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=60)


def test_a_lock_left_by_a_dead_process_is_taken_over(ray_local, tmp_path, caplog):
    out = str(tmp_path / "out")
    coll = os.path.join(out, *VARIANT)
    os.makedirs(coll)
    with open(os.path.join(coll, LOCK), "w") as f:
        json.dump({"host": host_name(), "pid": _dead_pid(), "since": time.time() - 60}, f)
    with caplog.at_level(logging.WARNING, logger="genbench.shards.lock"), redirect_stderr(io.StringIO()):
        build_collections(parse_config(copy.deepcopy(CFG)), out, workers=1, progress=False)
    assert any("taking over a stale lock" in r.getMessage() for r in caplog.records)
    assert not os.path.exists(os.path.join(coll, LOCK))


def test_only_dead_writers_temporary_files_are_swept(tmp_path):
    store = Store(str(tmp_path))
    me, dead = os.getpid(), _dead_pid()
    names = {
        "live": f".000001.tar.{host_name()}~{me}~{'a' * 32}.tmp",  # a running writer's: kept
        "dead": f".000002.tar.{host_name()}~{dead}~{'b' * 32}.tmp",  # a killed writer's: swept
        "foreign": f".000003.tar.otherhost~{me}~{'c' * 32}.tmp",  # another host's, recent: kept
        "legacy": f".000004.tar.{'d' * 32}.tmp",  # an earlier genbench's unnamed temporary: swept
    }
    for n in names.values():
        (tmp_path / n).write_bytes(b"x")
    assert sorted(store.clean_temp_files()) == sorted([names["dead"], names["legacy"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names["live"], names["foreign"]])


@pytest.mark.parametrize("bad", ["not json", '{"pid": "x"}'])
def test_an_unreadable_lock_is_stale(tmp_path, bad):
    from genbench.shards.lock import CollectionLock

    store = Store(str(tmp_path))
    (tmp_path / LOCK).write_text(bad)
    with CollectionLock(store):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK).exists()
