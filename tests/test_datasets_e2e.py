"""Catalog datasets end to end from on-disk layouts: VOC-2007 scored as multi-label (11-point mAP), Hateful Memes
by ROC-AUC, and a dataset missing from data_root refused with exit code 2 before anything is written."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn.metrics import roc_auc_score

from genbench.catalog import get_dataset
from genbench.cli import main
from genbench.config import parse_config
from genbench.engine.experiment import run_experiment
from genbench.metrics import task
from genbench.vectors import normalise
from genbench.shards.sidecar import read_parquet_bytes


def _image(path, rng):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)).save(path)


def _voc(root, rng):
    spec = get_dataset("voc2007")
    base = root / "voc2007"
    for split, n in (("train", 60), ("test", 30)):
        lines = ["path,label"]
        for i in range(n):
            labels = sorted({int(i % 20), int(rng.integers(0, 20))})
            rel = f"img/{split}_{i}.png"
            _image(base / rel, rng)
            lines.append(f"{rel},{';'.join(spec.classes[c] for c in labels)}")
        (base / f"{split}.csv").write_text("\n".join(lines) + "\n")


def _memes(root, rng):
    spec = get_dataset("hateful_memes")
    base = root / "hateful_memes"
    for split_name in (spec.splits["train"], spec.splits["test"]):
        rows = []
        for i in range(24):
            rel = f"img/{split_name}_{i}.png"
            _image(base / rel, rng)
            rows.append(json.dumps({"img": rel, "label": i % 2}))
        (base / f"{split_name}.jsonl").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    _voc(root, rng)
    _memes(root, rng)
    return root


def _cfg(dataset, data_root):
    return parse_config({
        "name": dataset, "datasets": [dataset], "clip": "tiny", "shard_size": 16, "data_root": str(data_root),
        "accept_test_subset": True,  # the fake copies hold a few test images, not the catalog's thousands
        "sources": [{"source": "original", "shots": 2}], "engine": {"workers": 1},
    })


def _logits(out, dataset, data_root, tmp_path):
    """Recompute CLER logits independently: test embeddings via `genbench embed`, centroids from the sidecars."""
    emb_file = tmp_path / f"{dataset}-test.parquet"
    assert main(["embed", "--dataset", dataset, "--split", "test", "--clip", "tiny", "--out", str(emb_file),
                 "--data-root", str(data_root)]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(emb_file)
    test = np.stack(table.column("embedding").to_pylist()).astype(np.float32)
    coll = os.path.join(out, "shards", dataset, "original", "kshot_s0", "emb", "tiny")
    spec = get_dataset(dataset)
    sums = np.zeros((spec.num_classes, test.shape[1]))
    for name in sorted(os.listdir(coll)):
        _, cls, emb = read_parquet_bytes(open(os.path.join(coll, name), "rb").read())
        np.add.at(sums, cls, emb)
    return test @ normalise(sums).T.astype(np.float32), table


def test_voc2007_is_scored_as_multilabel(ray_local, data_root, tmp_path):
    out = str(tmp_path / "voc")
    (rec,) = run_experiment(_cfg("voc2007", data_root), out, progress=False)
    assert rec["metric"] == "map_11point" and rec["n_test"] == 30
    logits, table = _logits(out, "voc2007", data_root, tmp_path)
    labels = np.array(table.column("cls").to_pylist())
    assert labels.shape == (30, 20) and labels.sum(axis=1).min() >= 1  # multi-hot ground truth
    assert rec["scores"]["cler"] == pytest.approx(task.map_11point(labels, logits), abs=1e-3)


def test_hateful_memes_is_scored_by_roc_auc(ray_local, data_root, tmp_path):
    out = str(tmp_path / "memes")
    (rec,) = run_experiment(_cfg("hateful_memes", data_root), out, progress=False)
    assert rec["metric"] == "roc_auc"
    logits, table = _logits(out, "hateful_memes", data_root, tmp_path)
    labels = np.array(table.column("cls").to_pylist())
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected = 100 * roc_auc_score(labels, (z / z.sum(axis=1, keepdims=True))[:, 1])
    assert rec["scores"]["cler"] == pytest.approx(expected, abs=1e-3)


def test_dataset_absent_from_data_root_fails_cleanly(tmp_path, capsys):
    cfg = {"name": "missing", "datasets": ["cifar10"], "clip": "tiny", "data_root": str(tmp_path / "data"),
           "sources": [{"source": "original", "shots": 1}]}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for needle in ("cifar10", str(tmp_path / "data" / "cifar10"), "imagefolder", "manifest", "cs.toronto.edu"):
        assert needle in err, err
    assert not out.exists()
