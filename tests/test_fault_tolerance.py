"""The engine's scale and fault-tolerance claims, proved on the shared local Ray cluster with tiny/null models.

Worker count does not change a byte; a SIGKILLed worker or driver loses and duplicates nothing; growing a run only
adds shards; a shard that keeps failing is retried a bounded number of times and named, while the rest is committed.
"""

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
import webdataset as wds

from genbench.config import parse_config
from genbench.engine.experiment import build_collections, run_experiment
from tests.helpers import sha, snapshot, tars, worker_killed_during

BIN = os.path.dirname(sys.executable)
SHOTS, SHARD = 4, 10  # digits has 10 classes: 4 shards of 10 samples
GEN = {"source": "generated", "generator": "tiny", "strategies": ["st"], "shots": SHOTS, "steps": 2,
       "guidance_scale": 3.0, "batch_size": 5, "image_size": 32}
CONFIG = {"name": "ft", "datasets": ["digits"], "clip": "tiny", "seed": 0, "shard_size": SHARD, "sources": [GEN]}
VARIANT = ("digits", "generated", "tiny_st_steps2_cfg3_bs5_px32_s0")


def _build(root: str, workers: int, config: dict | None = None) -> str:
    build_collections(parse_config(copy.deepcopy(config or CONFIG)), root, workers=workers, progress=False)
    return os.path.join(root, *VARIANT)


def _files(coll: str) -> dict[str, str]:
    """sha256 of every tar and embedding sidecar of a collection, by relative path."""
    out = {}
    for dirpath, _, names in os.walk(coll):
        for n in names:
            if n.endswith((".tar", ".parquet")):
                p = os.path.join(dirpath, n)
                out[os.path.relpath(p, coll)] = sha(p)
    return out


def _keys(coll: str) -> list[str]:
    return [s["__key__"] for s in wds.WebDataset(tars(coll), shardshuffle=False, empty_check=False)]


def _expected_keys(shots: int = SHOTS, classes: int = 10) -> list[str]:
    return sorted(f"c{c:04d}-k{k:06d}" for k in range(shots) for c in range(classes))


def _temp_files(root: str) -> list[str]:
    return [n for _, _, names in os.walk(root) for n in names if n.endswith(".tmp")]


@pytest.fixture(scope="module")
def reference(ray_local, tmp_path_factory):
    """The undisturbed run with 2 workers: the bytes every other run must reproduce."""
    coll = _build(str(tmp_path_factory.mktemp("ref")), workers=2)
    return coll, _files(coll)


def test_one_or_two_workers_give_identical_shards(reference, tmp_path):
    coll, files = reference
    assert sum(f.endswith(".tar") for f in files) == SHOTS and sum(f.endswith(".parquet") for f in files) == SHOTS
    one = _build(str(tmp_path), workers=1)
    assert _files(one) == files
    assert sorted(_keys(one)) == _expected_keys()


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _committed(coll: str) -> list[str]:
    stats = os.path.join(coll, "stats")
    return sorted(os.listdir(stats)) if os.path.isdir(stats) else []


def test_sigkilled_worker_loses_and_duplicates_nothing(reference, ray_local, tmp_path, caplog):
    ref_coll, ref_files = reference
    coll = os.path.join(str(tmp_path), *VARIANT)
    # The first record means both workers are busy with their next shards: one is killed mid-shard.
    with worker_killed_during("run", lambda: bool(_committed(coll))) as state:
        with caplog.at_level(logging.WARNING, logger="genbench.engine.dispatch"):
            _build(str(tmp_path), workers=2)
    errors, killed = state["errors"], state["killed"]
    assert not errors and killed
    # The kill hit shards in flight on that worker; each was retried once and committed by a live process.
    hit = {r.getMessage().split()[0].rsplit("/", 1)[1] for r in caplog.records
           if "(attempt 1/3): worker died" in r.getMessage()}
    assert hit
    records = {n[:-5]: json.load(open(os.path.join(coll, "stats", n))) for n in _committed(coll)}
    assert all(records[shard]["pid"] != killed[0] for shard in hit)
    assert not [r for r in caplog.records if "giving up" in r.getMessage()]
    assert _files(coll) == ref_files
    keys = _keys(coll)
    assert len(keys) == len(set(keys)) and sorted(keys) == _expected_keys()
    assert not _temp_files(str(tmp_path))
    manifest = json.load(open(os.path.join(coll, "manifest.json")))
    assert manifest["complete"] is True and manifest["samples"] == SHOTS * 10


def _session_pids(sid: int) -> list[int]:
    """Live processes of the process session ``sid`` (the killed driver's own raylet, gcs_server, workers, ...)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(entry))
    return out


NULL_SHOTS = 20  # null generator: 20 cheap shards, so the driver dies with most of them unfinished


def _null_args(out: str) -> list[str]:
    return ["--no-progress", "generate", "--dataset", "digits", "--shots", str(NULL_SHOTS), "--out", out, "--clip", "tiny",
            "--generator", "null", "--resolution", "32", "--shard-size", str(SHARD), "--workers", "1"]


def test_killed_driver_resumes_only_unfinished_shards(ray_local, tmp_path):
    from genbench.cli import main

    assert main(_null_args(str(tmp_path / "undisturbed"))) == 0
    ref_files = _files(os.path.join(str(tmp_path / "undisturbed"), "digits", "generated", "null_st_res32_s0"))
    out = str(tmp_path / "out")
    coll = os.path.join(out, "digits", "generated", "null_st_res32_s0")
    cmd = [os.path.join(BIN, "genbench"), *_null_args(out)]
    # Its own embedded Ray (no address to join), in its own process session so that it can be killed as a whole.
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_ADDRESS": ""}
    log = open(tmp_path / "driver.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_for(lambda: _committed(coll) or proc.poll() is not None, 240, "a committed shard")
        assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-2000:]
    finally:
        # SIGKILL the driver and everything it started (its raylet, gcs_server, workers): nothing else is touched.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        _wait_for(lambda: not _session_pids(proc.pid), 60, "the killed driver's Ray processes to exit")
        log.close()
    done = _committed(coll)
    assert 0 < len(done) < NULL_SHOTS, "the driver must die part-way through"
    before = snapshot(coll)

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280, start_new_session=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = snapshot(coll)
    for name in done:  # finished shards were neither rewritten nor re-recorded
        tar = name.replace(".json", ".tar")
        assert after[tar] == before[tar] and after["stats/" + name] == before["stats/" + name]
    assert len([n for n in after if n.endswith(".tar")]) == NULL_SHOTS
    assert _files(coll) == ref_files
    keys = _keys(coll)
    assert len(keys) == len(set(keys)) and sorted(keys) == _expected_keys(NULL_SHOTS)
    assert not _temp_files(out)


def _null_config(shots, shard_size: int = 40) -> dict:
    return {"name": "grow", "datasets": ["digits"], "clip": "tiny", "seed": 0, "shard_size": shard_size,
            "sources": [{"source": "generated", "generator": "null", "strategies": ["st"], "shots": shots,
                         "resolution": 32}]}


def test_growth_adds_shards_and_shot_lists_score_prefixes(ray_local, tmp_path):
    out = str(tmp_path)
    coll = os.path.join(out, "shards", "digits", "generated", "null_st_res32_s0")

    def run(shots):
        return run_experiment(parse_config(_null_config(shots)), out, progress=False)

    four = run(4)
    first = snapshot(coll)
    assert [n for n in first if n.endswith(".tar")] == ["000000.tar"]  # 4 shots x 10 classes = one shard of 40
    eight = run(8)
    grown = snapshot(coll)
    assert {n: grown[n] for n in first} == first  # same bytes and mtimes: the old shard was not rewritten
    assert sorted(n for n in grown if n.endswith(".tar")) == ["000000.tar", "000001.tar"]
    assert sorted(_keys(coll)) == _expected_keys(8)

    many = {r["shots"]: r for r in run([2, 4, 8])}
    assert snapshot(coll) == grown  # scoring prefixes makes nothing
    assert {k: r["n_train"] for k, r in many.items()} == {2: 20, 4: 40, 8: 80}
    assert many[4]["scores"] == four[0]["scores"] and many[8]["scores"] == eight[0]["scores"]
    assert all(r["collection"] == coll for r in many.values())


def test_failing_shards_are_retried_a_bounded_number_of_times_and_named(ray_local, tmp_path, caplog):
    from genbench.cli import main

    out = str(tmp_path)
    coll = os.path.join(out, "digits", "generated", "null_st_res32_s0")
    # A directory where two shards' tars must go: the rename fails in the worker on every attempt, as a full or
    # read-only volume would, while every other shard commits normally.
    for blocked in ("000001.tar", "000003.tar"):
        os.makedirs(os.path.join(coll, blocked, "in-the-way"))
    argv = ["--no-progress", "generate", "--dataset", "digits", "--shots", "5", "--out", out, "--clip", "tiny",
            "--generator", "null", "--resolution", "32", "--shard-size", "10", "--workers", "2"]
    err = io.StringIO()
    with caplog.at_level(logging.WARNING, logger="genbench.engine.dispatch"), redirect_stderr(err):
        rc = main(argv)
    assert rc == 1
    message = err.getvalue()
    assert "2 shard(s) stayed failed" in message
    assert "digits/generated/null_st_res32_s0/000001" in message and "digits/generated/null_st_res32_s0/000003" in message
    retries = [r for r in caplog.records if "retrying on another worker" in r.getMessage()]
    assert sorted(r.getMessage().split()[0] for r in retries) == sorted(
        ["digits/generated/null_st_res32_s0/000001"] * 2 + ["digits/generated/null_st_res32_s0/000003"] * 2)  # max_retries = 2
    assert _committed(coll) == ["000000.json", "000002.json", "000004.json"]
    manifest = json.load(open(os.path.join(coll, "manifest.json")))
    assert manifest["complete"] is False
    assert [s["tar"] for s in manifest["shards"]] == ["000000.tar", "000002.tar", "000004.tar"]
    assert sorted(k for s in manifest["shards"] for k in [s["samples"]]) == [10, 10, 10]
    # The two failed shards are missing whole, and said so (an empty or failed collection is never "complete").
    assert manifest["shortfall"]["missing_samples"] == 20 and manifest["shortfall"]["missing_shards"] == 2
    assert manifest["shortfall"]["per_class"] == {str(c): 2 for c in range(10)}

    # Clear the obstacle: the rerun makes only the two missing shards.
    for blocked in ("000001.tar", "000003.tar"):
        os.rmdir(os.path.join(coll, blocked, "in-the-way"))
        os.rmdir(os.path.join(coll, blocked))
    before = snapshot(coll)
    assert main(argv) == 0
    after = snapshot(coll)
    assert {n: after[n] for n in before} == before
    assert sorted(_keys(coll)) == _expected_keys(5)
    assert json.load(open(os.path.join(coll, "manifest.json")))["complete"] is True

