"""Per-class sums persisted beside the shards: a resumed run and centroid scoring read no embedding sidecar, and the
sums they read are exactly the sidecars' (int64 fixed point), so the scores do not change."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys

import numpy as np
import pytest

from genbench.config import parse_config
from genbench.engine.experiment import run_experiment
from genbench.engine.scoring import score_collection_dir
from genbench.shards.classsums import collection_sums, shard_sums_rel
from genbench.shards.reader import sidecar_class_sums
from genbench.shards.store import Store

BASE = {"name": "sums", "datasets": ["digits"], "clip": "tiny", "seed": 0, "shard_size": 15,
        "metrics": ["zeroshot", "cler", "cler_text"]}
_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # a process-wide hook; it records only inside opened_files()


@contextlib.contextmanager
def opened_files():
    """Every path this process opens (Python's ``open`` audit event: io.open, os.open, fsspec's local files)."""
    global _OPENED
    _OPENED = found = []
    try:
        yield found
    finally:
        _OPENED = None


def _sidecars(paths: list[str], coll: str) -> list[str]:
    return [p for p in paths if p.startswith(os.path.join(coll, "emb")) and p.endswith(".parquet")]


def _cfg(shots: list[int]) -> object:
    return parse_config(copy.deepcopy({**BASE, "sources": [{"source": "original", "shots": shots}]}))


def test_a_resumed_run_and_centroid_scoring_read_no_sidecar_and_damaged_sums_are_not_used(ray_local, tmp_path):
    """4 shots x 10 classes in shards of 15 = (0-15, 15-30, 30-40); the 3-shot prefix ends on a shard boundary."""
    out = str(tmp_path)
    first = run_experiment(_cfg([3, 4]), out, progress=False)
    coll = first[0]["collection"]
    store = Store(coll)
    records = {n: json.loads(store.read_bytes(f"stats/{n}.json")) for n in ("000000", "000001", "000002")}
    slug = records["000000"]["embeddings"][0]
    assert all(r["class_sums"][slug]["sha256"] for r in records.values())
    with open(os.path.join(coll, "manifest.json")) as f:
        assert set(json.load(f)["class_sums"]) == {slug}

    # The persisted sums are the sidecars' sums to the last bit.
    shards = [(n, r["slot_stop"], r) for n, r in sorted(records.items())]
    fixed, counts = collection_sums(store, shards, slug, 10, fixed=True)
    ref_fixed, ref_counts = sidecar_class_sums(store, [(n, s) for n, s, _ in shards], slug, 10, fixed=True)
    assert np.array_equal(fixed, ref_fixed) and np.array_equal(counts, ref_counts)

    # An interrupted run: the last shard's record and the manifest never got written.
    os.remove(os.path.join(coll, "stats", "000002.json"))
    os.remove(os.path.join(coll, "manifest.json"))
    with opened_files() as opened:
        again = run_experiment(_cfg([3, 4]), out, progress=False)
    assert _sidecars(opened, coll) == []
    # The resumed sums and the 3-shot prefix read the two finished shards' sums files.
    assert [shard_sums_rel(slug, n) for n in ("000000", "000001")] == sorted(
        {os.path.relpath(p, coll) for p in opened if p.startswith(os.path.join(coll, "sums", slug, ""))})
    for a, b in zip(first, again):
        assert a["shots"] == b["shots"] and a["n_train"] == b["n_train"]
        for name, value in a["scores"].items():
            assert b["scores"][name] == pytest.approx(value, abs=1e-12)

    # `genbench score` on the whole collection reads its totals file; on a prefix, the shards' sums.
    for shots, want in ((None, "sums/" + slug + ".npz"), (3, shard_sums_rel(slug, "000001"))):
        with opened_files() as opened:
            rec = score_collection_dir(coll, "digits", "tiny", shots=shots, metrics=["cler"])
        assert _sidecars(opened, coll) == [] and any(p.endswith(want) for p in opened)
        assert rec["scores"]["cler"] == pytest.approx(first[1 if shots is None else 0]["scores"]["cler"], abs=1e-12)


    # A damaged shard sums file: that shard's sidecar is read instead, and the sums are the same to the last bit.
    now = {n: json.loads(store.read_bytes(f"stats/{n}.json")) for n in sorted(records)}
    shards = [(n, r["slot_stop"], r) for n, r in now.items()]
    want = collection_sums(store, shards, slug, 10, fixed=True)
    with open(os.path.join(coll, shard_sums_rel(slug, "000001")), "r+b") as f:
        f.seek(-9, os.SEEK_END)
        f.write(b"\x7f")  # one byte of the sums changed: its sha256 no longer matches the record
    with opened_files() as opened:
        got = collection_sums(store, shards, slug, 10, fixed=True)
    assert [os.path.basename(p) for p in _sidecars(opened, coll)] == ["000001.parquet"]
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    # A totals file that does not match the manifest is not used either: the shards are summed, to the same score.
    with open(os.path.join(coll, "sums", slug + ".npz"), "ab") as f:
        f.write(b"\0")
    with opened_files() as opened:
        rec = score_collection_dir(coll, "digits", "tiny", metrics=["cler"])
    assert rec["scores"]["cler"] == pytest.approx(first[1]["scores"]["cler"], abs=1e-12)
    assert [os.path.basename(p) for p in _sidecars(opened, coll)] == ["000001.parquet"]
