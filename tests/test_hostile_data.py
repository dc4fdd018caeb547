"""Crafted collections and dataset directories under a temporary root: nothing outside a collection or a dataset is
read or written through it, bad files are counted and skipped where a run can go on, and fatal, naming the file,
where going on would give a wrong number."""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from genbench.catalog import get_dataset
from genbench.catalog.loaders import load_split
from genbench.cli import main
from genbench.config import parse_config
from genbench.engine.experiment import run_experiment
from genbench.errors import UsageError
from genbench.shards.store import Store

HERE = os.path.dirname(os.path.abspath(__file__))
LEGACY_KSHOT = os.path.join(HERE, "fixtures", "legacy_v1", "shards", "digits", "original", "kshot_s0")


def _png(seed: int, size=(9, 7)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ---- collections --------------------------------------------------------------------------------------------------


def test_store_paths_stay_inside_the_collection(tmp_path):
    store = Store(str(tmp_path / "coll"))
    for bad in ("../x.tar", "/etc/passwd", "a/../../b", "emb\\..\\x", "a\x00b"):
        with pytest.raises(UsageError):
            store.path(bad)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "coll").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "coll" / "stats")
    with pytest.raises(UsageError, match="stats is a link|inside the collection"):
        store.write_bytes("stats/000000.json", b"{}")
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize("tar", ["../../outside.tar", "/tmp/outside.tar", "000000.tar/../../x.tar"])
def test_a_manifest_naming_a_file_outside_is_refused_by_score_and_embed(tmp_path, capsys, tar):
    coll = tmp_path / "kshot"
    shutil.copytree(LEGACY_KSHOT, coll)
    man = json.loads((coll / "manifest.json").read_text())
    man["shards"][0]["tar"] = tar
    (coll / "manifest.json").write_text(json.dumps(man))
    shutil.rmtree(coll / "emb")  # so score would have to read the tar to embed it
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["score", "--train", str(coll), "--dataset", "digits", "--clip", "tiny", "--json",
                 str(tmp_path / "s.json")]) == 2
    assert "NNNNNN.tar" in _one_line(capsys)
    assert main(["embed", "--collection", str(coll), "--clip", "tiny"]) == 2
    assert "NNNNNN.tar" in _one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not (coll / "emb").exists()


def _cfg(**top):
    return parse_config({"name": "h", "datasets": ["digits"], "clip": "tiny", "shard_size": 10,
                         "sources": [{"source": "original", "shots": 2}], **top})


def test_a_stats_record_pointing_outside_is_not_trusted(ray_local, tmp_path):
    out = str(tmp_path / "out")
    (rec,) = run_experiment(_cfg(), out, progress=False)
    coll = rec["collection"]
    outside = tmp_path / "outside.tar"
    shutil.copy(os.path.join(coll, "000000.tar"), outside)  # same size, same sha256
    stats = os.path.join(coll, "stats", "000000.json")
    record = json.load(open(stats))
    record["tar"] = "../../../outside.tar"
    json.dump(record, open(stats, "w"))
    (again,) = run_experiment(_cfg(), out, progress=False)
    assert json.load(open(stats))["tar"] == "000000.tar"  # the shard was redone and recorded as itself
    wids = json.load(open(os.path.join(coll, "index.wids.json")))
    assert [s["url"] for s in wids["shardlist"]] == ["000000.tar", "000001.tar"]
    assert again["scores"] == rec["scores"]


def test_symlinked_stats_or_emb_are_refused_and_nothing_outside_is_written(ray_local, tmp_path, capsys):
    out = str(tmp_path / "out")
    (rec,) = run_experiment(_cfg(), out, progress=False)
    coll = rec["collection"]
    for sub in ("stats", "emb"):
        elsewhere = tmp_path / f"elsewhere-{sub}"
        shutil.move(os.path.join(coll, sub), elsewhere)
        before = {p: p.stat().st_mtime_ns for p in elsewhere.rglob("*")}
        os.symlink(elsewhere, os.path.join(coll, sub))
        if os.path.exists(os.path.join(coll, "000001.tar")):
            os.remove(os.path.join(coll, "000001.tar"))  # something to redo, so the run must write
        with pytest.raises(UsageError, match="link|inside the collection"):
            run_experiment(_cfg(), out, progress=False)
        assert {p: p.stat().st_mtime_ns for p in elsewhere.rglob("*")} == before
        os.remove(os.path.join(coll, sub))
        shutil.move(elsewhere, os.path.join(coll, sub))


def test_unreadable_sidecars_and_records_are_not_done_and_are_made_again(ray_local, tmp_path):
    out = str(tmp_path / "out")
    (rec,) = run_experiment(_cfg(), out, progress=False)
    coll = rec["collection"]
    tar0 = os.stat(os.path.join(coll, "000000.tar")).st_mtime_ns
    with open(os.path.join(coll, "emb", "tiny", "000000.parquet"), "r+b") as f:
        f.truncate(100)  # a truncated sidecar: re-embedded from the tar, which stays as it is
    with open(os.path.join(coll, "stats", "000001.json"), "w") as f:
        f.write('{"shard": "000001", "tar": ')  # a half-written record: the shard is redone
    (again,) = run_experiment(_cfg(), out, progress=False)
    assert os.stat(os.path.join(coll, "000000.tar")).st_mtime_ns == tar0
    assert json.load(open(os.path.join(coll, "stats", "000001.json")))["shard"] == "000001"
    for name, value in rec["scores"].items():
        assert again["scores"][name] == pytest.approx(value, abs=1e-9)


# ---- datasets -----------------------------------------------------------------------------------------------------


@pytest.fixture
def eurosat(tmp_path):
    """A small ImageFolder EuroSAT: 3 train and 1 test image per class."""
    root = tmp_path / "data"
    spec = get_dataset("eurosat")
    for split, n in (("train", 3), ("test", 1)):
        for c, name in enumerate(spec.classes):
            for i in range(n):
                path = root / "eurosat" / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_png(100 * c + i))
    return root


def test_imagefolder_skips_links_leading_out_and_fifos(eurosat, tmp_path):
    spec = get_dataset("eurosat")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "0.png").write_bytes(_png(999))
    train = eurosat / "eurosat" / "train"
    os.symlink(outside, train / "linked-class")  # a class folder that is a link: never walked
    os.symlink(outside / "0.png", train / spec.classes[0] / "leak.png")  # a file that links out: skipped
    os.mkfifo(train / spec.classes[1] / "pipe.png")  # would block a reader forever: skipped
    split = load_split(spec, "train", str(eurosat))
    assert len(split) == 3 * spec.num_classes
    assert all(str(outside) not in str(p) and p.name != "pipe.png" for p in split.paths)


@pytest.mark.parametrize("path", ["../../../secret.png", "/etc/hostname", "sub/../../x.png"])
def test_a_csv_manifest_path_leaving_the_dataset_is_refused_naming_the_row(tmp_path, path):
    spec = get_dataset("eurosat")
    root = tmp_path / "data" / "eurosat"
    root.mkdir(parents=True)
    (root / "a.png").write_bytes(_png(1))
    (root / "test.csv").write_text(f"path,label\na.png,{spec.classes[0]}\n{path},{spec.classes[1]}\n")
    with pytest.raises(UsageError) as err:
        load_split(spec, "test", str(tmp_path / "data")).labels
    assert err.value.field.endswith("test.csv:3")


def test_bad_training_images_are_counted_skipped_and_named(ray_local, eurosat, tmp_path):
    spec = get_dataset("eurosat")
    train = eurosat / "eurosat" / "train"
    (train / spec.classes[2] / "0.png").write_bytes(_png(5)[:40])  # truncated
    (train / spec.classes[3] / "1.png").write_bytes(b"")  # empty
    out = str(tmp_path / "out")
    assert main(["--no-progress", "original", "--dataset", "eurosat", "--shots", "3", "--out", out, "--clip", "tiny",
                 "--data-root", str(eurosat), "--workers", "1"]) == 0
    man = json.load(open(os.path.join(out, "eurosat", "original", "kshot_s0", "manifest.json")))
    assert man["bad_samples"]["count"] == 2 and man["shortfall"]["missing_samples"] == 2
    named = {b["input"]["path"] for b in man["bad_samples"]["examples"]}
    assert named == {f"{spec.classes[2]}/0.png", f"{spec.classes[3]}/1.png"}
    assert man["complete"] is True


def test_a_bad_test_image_is_fatal_naming_the_file(ray_local, eurosat, tmp_path, capsys):
    spec = get_dataset("eurosat")
    (eurosat / "eurosat" / "test" / spec.classes[4] / "0.png").write_bytes(b"not an image")
    cfg = {"name": "e", "datasets": ["eurosat"], "clip": "tiny", "data_root": str(eurosat), "accept_test_subset": True,
           "sources": [{"source": "original", "shots": 1}], "engine": {"workers": 1}}
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg))
    assert main(["--no-progress", "run", str(path), "--out", str(tmp_path / "out")]) == 2
    line = _one_line(capsys)
    assert "eurosat test split" in line and f"{spec.classes[4]}/0.png" in line


def test_a_test_split_of_the_wrong_size_is_refused_unless_accepted(eurosat, tmp_path, capsys):
    cfg = {"name": "e", "datasets": ["eurosat"], "clip": "tiny", "data_root": str(eurosat),
           "sources": [{"source": "original", "shots": 1}]}
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert "10 images" in line and "5000" in line and "accept_test_subset" in line and not out.exists()
