"""Original k-shot shards built through the engine from a dataset on disk (an ImageFolder copy of EuroSAT and a
webdataset copy of GTSRB): labels and pixels match the source files, and the 2-shot set is inside the 4-shot set."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from genbench.catalog import get_dataset
from genbench.cli import main
from tests.helpers import tars


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ondisk")
    rng = np.random.default_rng(3)
    pixels = {}
    spec = get_dataset("eurosat")
    for split, per_class in (("train", 5), ("test", 2)):
        for c, name in enumerate(spec.classes):
            for i in range(per_class if c != 7 else 3):  # class 7 has only 3 training images: a shortfall at 4 shots
                a = rng.integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
                path = root / "eurosat" / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_png(a))
                pixels[os.path.join(split, name, f"{i}.png")] = (c, a)
    gt = get_dataset("gtsrb")
    for split in ("train", "test"):
        (root / "gtsrb").mkdir(exist_ok=True)
        with wds.TarWriter(str(root / "gtsrb" / f"{split}-000000.tar")) as sink:
            for c in range(gt.num_classes):
                for i in range(4 if split == "train" else 1):
                    a = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
                    key = f"s{c:03d}x{i}"
                    sink.write({"__key__": key, "png": _png(a), "cls": str(c).encode()})
                    pixels[f"gtsrb/{split}/{key}"] = (c, a)
    return root, pixels


def _samples(root_out: str, dataset: str):
    coll = os.path.join(root_out, dataset, "original", "kshot_s0")
    return list(wds.WebDataset(tars(coll), shardshuffle=False, empty_check=False).decode("rgb8"))


@pytest.mark.parametrize("dataset", ["eurosat", "gtsrb"])
def test_original_shards_from_disk_are_pixel_exact_and_nested(ray_local, data_root, tmp_path, dataset):
    root, pixels = data_root
    picked = {}
    for shots in (2, 4):
        out = str(tmp_path / f"k{shots}")
        assert main(["original", "--dataset", dataset, "--shots", str(shots), "--out", out, "--clip", "tiny",
                     "--data-root", str(root), "--shard-size", "16", "--workers", "2"]) == 0
        samples = _samples(out, dataset)
        picked[shots] = {}
        for s in samples:
            ref = s["json"]["original"]
            prefix = "train/" if dataset == "eurosat" else "gtsrb/train/"
            src, (cls, a) = next((k, v) for k, v in pixels.items() if k.startswith(prefix) and np.array_equal(v[1], s["png"]))
            if dataset == "eurosat":
                assert src.endswith(ref["path"].replace(os.sep, "/").split("train/")[-1])  # the json names the file
            assert int(s["cls"]) == cls == s["json"]["cls"]
            assert np.array_equal(s["png"], a)
            picked[shots][s["__key__"]] = s["png"].tobytes()
        expected = get_dataset(dataset).num_classes * shots - (1 if dataset == "eurosat" and shots == 4 else 0)
        assert len(samples) == expected
    # Nested: every 2-shot sample is the same image under the same key in the 4-shot collection.
    assert all(picked[4][k] == v for k, v in picked[2].items())
    if dataset == "eurosat":
        import json

        man = json.load(open(os.path.join(str(tmp_path / "k4"), "eurosat", "original", "kshot_s0", "manifest.json")))
        assert man["shortfall"]["missing_samples"] == 1 and man["shortfall"]["per_class"] == {"7": 1}
