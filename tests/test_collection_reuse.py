"""What a collection on disk is worth to a later run: fewer shots reuse its prefix, a new CLIP model only embeds its
images, and a collection written before the sources-as-plugins reshape is read, resumed and scored as it is."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil

import pytest
import webdataset as wds

from genbench.config import parse_config
from genbench.errors import UsageError
from genbench.engine.experiment import build_collections, run_experiment
from tests.helpers import snapshot, tars

HERE = os.path.dirname(os.path.abspath(__file__))
LEGACY = os.path.join(HERE, "fixtures", "legacy_v1")

BASE = {"name": "reuse", "datasets": ["digits"], "clip": "tiny", "seed": 0, "shard_size": 15}


def _cfg(sources: list[dict], **top) -> object:
    return parse_config(copy.deepcopy({**BASE, **top, "sources": sources}))


def _manifest(coll: str) -> dict:
    with open(os.path.join(coll, "manifest.json")) as f:
        return json.load(f)


def _wids_urls(coll: str) -> list[str]:
    with open(os.path.join(coll, "index.wids.json")) as f:
        return [s["url"] for s in json.load(f)["shardlist"]]


def test_fewer_shots_reuse_the_prefix_and_rewrite_nothing(ray_local, tmp_path, caplog):
    """4 shots x 10 classes in shards of 15 = (0-15, 15-30, 30-40). Asking for 2 shots (20 samples) must score the
    prefix: shard 1 holds slots 15-30, more than the 15-20 needed, and is still the right shard."""
    out = str(tmp_path)

    def started() -> int:
        return len([r for r in caplog.records if "worker actor" in r.getMessage()])

    with caplog.at_level(logging.INFO, logger="genbench.engine.dispatch"):
        (big,) = run_experiment(_cfg([{"source": "original", "shots": 4}]), out, progress=False)
        assert started() == 1
        coll = big["collection"]
        before = snapshot(coll)
        assert sorted(n for n in before if n.endswith(".tar")) == ["000000.tar", "000001.tar", "000002.tar"]

        caplog.clear()
        (small,) = run_experiment(_cfg([{"source": "original", "shots": 2}]), out, progress=False)
    assert snapshot(coll) == before  # same bytes, same mtimes
    # Nothing to make and the test split's embeddings cached: no worker actor was started.
    assert started() == 0
    assert small["n_train"] == 20 and small["shots"] == 2
    assert _wids_urls(coll) == ["000000.tar", "000001.tar", "000002.tar"]
    man = _manifest(coll)
    assert [s["tar"] for s in man["shards"]] == ["000000.tar", "000001.tar", "000002.tar"] and man["complete"] is True
    assert man["spec"]["shots"] == 4  # the collection still holds 4 shots

    # The same through the build command, and the prefix scores equal a fresh 2-shot collection's.
    build_collections(_cfg([{"source": "original", "shots": 1}]), os.path.join(out, "shards"), progress=False)
    assert snapshot(coll) == before and _wids_urls(coll) == ["000000.tar", "000001.tar", "000002.tar"]
    (fresh,) = run_experiment(_cfg([{"source": "original", "shots": 2}]), str(tmp_path / "fresh"), progress=False)
    for name, value in fresh["scores"].items():
        assert small["scores"][name] == pytest.approx(value, abs=1e-9)


def test_deleting_the_tail_shrinks_the_collection_instead_of_remaking_it(ray_local, tmp_path):
    """Only shards whose tar is there define what a collection holds: with the last tar deleted, asking for fewer
    shots makes nothing and the manifest lists what is left."""
    out = str(tmp_path)
    (big,) = run_experiment(_cfg([{"source": "original", "shots": 4}]), out, progress=False)
    coll = big["collection"]
    os.remove(os.path.join(coll, "000002.tar"))
    before = snapshot(coll)
    (small,) = run_experiment(_cfg([{"source": "original", "shots": 2}]), out, progress=False)
    assert snapshot(coll) == before and small["n_train"] == 20
    assert _wids_urls(coll) == ["000000.tar", "000001.tar"] and _manifest(coll)["spec"]["shots"] == 3


def test_a_new_clip_model_only_embeds_existing_images(ray_local, tmp_path):
    """A second CLIP model (a copy of the tiny one under another name) on a built generated collection: the tars keep
    their bytes and mtimes, the new sidecars appear, and the scores match the first model's (same weights)."""
    from genbench.models.build import built_clip_dir

    other = tmp_path / "clip-b"
    shutil.copytree(built_clip_dir("tiny-clip"), other)
    gen = {"source": "generated", "generator": "tiny", "strategies": ["st"], "shots": 2, "steps": 2,
           "guidance_scale": 3.0, "image_size": 32}
    out = str(tmp_path / "out")
    (first,) = run_experiment(_cfg([gen]), out, progress=False)
    coll = first["collection"]
    tar_before = {k: v for k, v in snapshot(coll).items() if k.endswith(".tar")}

    (second,) = run_experiment(_cfg([gen], clip=str(other)), out, progress=False)
    assert second["collection"] == coll
    assert {k: v for k, v in snapshot(coll).items() if k.endswith(".tar")} == tar_before
    assert sorted(os.listdir(os.path.join(coll, "emb"))) == ["clip-b", "tiny"]
    assert sorted(os.listdir(os.path.join(coll, "emb", "clip-b"))) == ["000000.parquet", "000001.parquet"]
    for shard in _manifest(coll)["shards"]:
        assert shard["embeddings"] == ["clip-b", "tiny"]
    for name in ("zeroshot", "cler", "cler_text"):
        assert second["scores"][name] == pytest.approx(first["scores"][name], abs=1e-6)


@pytest.fixture
def legacy_out(tmp_path):
    """A copy of collections written by genbench 7cdfb1c (before the reshape) with default options:
    `genbench generate --dataset digits --generator tiny --shots 1 --out OUT --clip tiny` and
    `genbench original --dataset digits --shots 2 --out OUT --clip tiny`."""
    out = tmp_path / "legacy"
    shutil.copytree(LEGACY, out)
    return str(out)


def test_legacy_collection_keeps_its_name_and_is_read_resumed_and_scored(ray_local, legacy_out):
    gen = os.path.join(legacy_out, "shards", "digits", "generated", "tiny_st_s0")
    orig = os.path.join(legacy_out, "shards", "digits", "original", "kshot_s0")
    before = {c: snapshot(c) for c in (gen, orig)}
    # Read with the real webdataset library, as a downstream trainer would.
    assert len(list(wds.WebDataset(tars(gen), shardshuffle=False, empty_check=False))) == 10
    assert len(list(wds.WebDataset(tars(orig), shardshuffle=False, empty_check=False))) == 20

    # The legacy ST collection was made with the earlier ST prompt ("a photo of a {}."): a run with Table 6's ST
    # would make different images under the same name, so it is refused before anything is written.
    cfg = parse_config({"name": "legacy", "datasets": ["digits"], "clip": "tiny",
                        "sources": [{"source": "generated", "generator": "tiny", "shots": 1},
                                    {"source": "original", "shots": [1, 2]}]})
    with pytest.raises(UsageError) as err:
        run_experiment(cfg, legacy_out, progress=False)
    assert err.value.field == "out" and "options" in str(err.value) and err.value.value.endswith("tiny_st_s0")
    assert snapshot(gen) == before[gen]

    cfg = parse_config({"name": "legacy", "datasets": ["digits"], "clip": "tiny",
                        "sources": [{"source": "original", "shots": [1, 2]}]})
    records = run_experiment(cfg, legacy_out, progress=False)
    assert [(r["source"], r["variant"], r["shots"]) for r in records] == [
        ("original", "kshot_s0", 1), ("original", "kshot_s0", 2)]
    assert [r["collection"] for r in records] == [orig, orig]
    assert [r["n_train"] for r in records] == [10, 20]
    for r in records:
        assert set(r["scores"]) == {"zeroshot", "cler", "cler_text"}
    for c in (gen, orig):
        assert snapshot(c) == before[c]  # no shard or record rewritten

    # `genbench score` reads the legacy collection too.
    from genbench.cli import main

    dest = os.path.join(legacy_out, "score.json")
    assert main(["score", "--train", orig, "--dataset", "digits", "--clip", "tiny", "--shots", "2", "--json", dest]) == 0
    with open(dest) as f:
        listed = json.load(f)
    assert isinstance(listed, list) and len(listed) == 1  # a list of records, as results.json
    scored = listed[0]
    # One record builder for run and score: the same fields, and here the same values (both read the same sums).
    assert set(scored) == set(records[1])
    for name, value in records[1]["scores"].items():
        assert scored["scores"][name] == pytest.approx(value, abs=1e-9)
    # Everything but the scores and their measured evaluation seconds is the same.
    assert ({k: v for k, v in scored.items() if k not in ("scores", "eval_seconds")}
            == {k: v for k, v in records[1].items() if k not in ("scores", "eval_seconds")})
    assert snapshot(orig) == before[orig]
    # generate -> score -> report chains: report takes the score's record file beside a results directory.
    report_dir = os.path.join(legacy_out, "report")
    assert main(["report", dest, legacy_out, "--out", report_dir]) == 0
    assert "2 result record(s)" in open(os.path.join(report_dir, "report.md")).read()
