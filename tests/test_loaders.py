"""Tiny fake copies of datasets in each accepted on-disk layout, read back through load_split.

The fakes are written in each layout's real on-disk format (MNIST idx files, CIFAR python pickles, Caltech-101 and VOC
folders as torchvision reads them, class folders, webdataset tars, CSV/JSONL manifests). Images are PNG so that
pixels must come back exactly.
"""

from __future__ import annotations

import io
import json
import pickle
import struct

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from genbench.catalog import get_dataset
from genbench.catalog.listing import format_table, list_entries
from genbench.catalog.loaders import load_split
from genbench.catalog.loaders.ondisk import find_layout, resolve_data_root
from genbench.errors import DatasetNotFound, UsageError

RNG = np.random.default_rng(7)


def rgb(h=5, w=6) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(a))


def pixels(split, i) -> np.ndarray:
    img = split.image(i)
    assert img.mode == "RGB"
    return np.asarray(img)


# ---- torchvision layouts --------------------------------------------------------------------------------------------


def write_mnist(raw, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes())


def test_mnist_idx_files_via_torchvision(tmp_path):
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    train_x = RNG.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    test_x = RNG.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    write_mnist(raw, "train", train_x, np.array([5, 0, 4, 1]))
    write_mnist(raw, "t10k", test_x, np.array([7, 2, 1]))
    spec = get_dataset("mnist")
    assert find_layout(spec, tmp_path) == "torchvision"
    test = load_split(spec, "test", str(tmp_path))
    assert test.labels.tolist() == [7, 2, 1] and test.labels.dtype == np.int64
    for i in range(3):
        got = pixels(test, i)
        assert got.shape == (28, 28, 3)
        assert np.array_equal(got[..., 0], test_x[i]) and np.array_equal(got[..., 2], test_x[i])
    train = load_split(spec, "train", str(tmp_path))
    assert train.labels.tolist() == [5, 0, 4, 1]
    assert np.array_equal(pixels(train, 3)[..., 1], train_x[3])
    assert train.ref(2)["torchvision_index"] == 2 and train.fingerprint != test.fingerprint


def test_cifar_pickles_that_fail_torchvisions_checksums_give_one_clear_error(tmp_path):
    # The CIFAR python batches are pickles; torchvision verifies their published md5 sums, so a fake copy in the exact
    # format is (rightly) refused. We check that the refusal reaches the user as a UsageError naming the dataset.
    base = tmp_path / "cifar10" / "cifar-10-batches-py"
    base.mkdir(parents=True)
    data = RNG.integers(0, 256, size=(2, 3072), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (base / name).write_bytes(pickle.dumps({"data": data, "labels": [3, 8]}))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": list(get_dataset("cifar10").classes)}))
    spec = get_dataset("cifar10")
    assert find_layout(spec, tmp_path) == "torchvision"
    split = load_split(spec, "test", str(tmp_path))  # cheap: nothing is opened yet
    with pytest.raises(UsageError) as err:
        split.labels
    msg = str(err.value)
    assert "cifar10" in msg and "CIFAR10" in msg and "corrupted" in msg and "\n" not in msg


def test_caltech101_folders_with_background_offset_and_seeded_split(tmp_path):
    cats = tmp_path / "caltech101" / "caltech101" / "101_ObjectCategories"
    made = {}
    for folder, n in [("BACKGROUND_Google", 2), ("Faces", 33), ("Faces_easy", 31), ("Leopards", 32)]:
        for k in range(1, n + 1):
            a = rgb(4, 4)
            # torchvision opens image_NNNN.jpg by name; PIL reads the PNG bytes inside, so pixels stay exact.
            save_png(cats / folder / f"image_{k:04d}.jpg", a)
            made[(folder, k)] = a
    spec = get_dataset("caltech101")
    train, test = load_split(spec, "train", str(tmp_path)), load_split(spec, "test", str(tmp_path))
    # torchvision drops BACKGROUND_Google; labels shift by one onto CLIP's 102-name list.
    assert sorted(set(train.labels.tolist())) == [1, 2, 3]
    assert [spec.classes[c] for c in (1, 2, 3)] == ["off-center face", "centered face", "leopard"]
    assert np.bincount(train.labels, minlength=4).tolist() == [0, 30, 30, 30]
    assert np.bincount(test.labels, minlength=4).tolist() == [0, 3, 1, 2]
    # Train and test are disjoint and together cover every torchvision sample.
    tr = {train.ref(i)["torchvision_index"] for i in range(len(train))}
    te = {test.ref(i)["torchvision_index"] for i in range(len(test))}
    assert not tr & te and len(tr | te) == 96
    # A test image is the right file: torchvision index -> folder/offset (Faces 0..32, Faces_easy 33..63, Leopards 64..).
    j = int(np.flatnonzero(test.labels == 3)[0])
    tv_idx = test.ref(j)["torchvision_index"]
    assert np.array_equal(pixels(test, j), made[("Leopards", tv_idx - 64 + 1)])


def test_voc_detection_folders_become_multilabel(tmp_path):
    voc = tmp_path / "voc2007" / "VOCdevkit" / "VOC2007"
    objects = {"000001": ["dog", "person", "dog"], "000002": ["tvmonitor"], "000003": ["aeroplane", "car"]}
    images = {}
    for img_id, names in objects.items():
        images[img_id] = rgb(6, 7)
        save_png(voc / "JPEGImages" / f"{img_id}.jpg", images[img_id])
        objs = "".join(f"<object><name>{n}</name><difficult>0</difficult></object>" for n in names)
        (voc / "Annotations").mkdir(parents=True, exist_ok=True)
        (voc / "Annotations" / f"{img_id}.xml").write_text(f"<annotation><filename>{img_id}.jpg</filename>{objs}</annotation>")
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000002\n000001\n000003\n")
    spec = get_dataset("voc2007")
    test = load_split(spec, "test", str(tmp_path))
    assert test.labels.shape == (3, 20) and test.labels.dtype == np.uint8
    names = [sorted(spec.classes[c] for c in np.flatnonzero(row)) for row in test.labels]
    assert names == [["tvmonitor"], ["dog", "person"], ["aeroplane", "car"]]
    assert np.array_equal(pixels(test, 1), images["000001"])
    assert [len(ix) for ix in test.class_indices()][spec.classes.index("dog")] == 1


# ---- generic layouts ------------------------------------------------------------------------------------------------


def test_imagefolder_by_class_name_and_index(tmp_path):
    spec = get_dataset("resisc45")
    split_dir = tmp_path / "resisc45" / "test"
    a, b, c = rgb(), rgb(), rgb()
    save_png(split_dir / "airplane" / "x1.png", a)  # by name: class 0
    save_png(split_dir / "44" / "x2.png", b)  # by index: the last class
    save_png(split_dir / spec.classes[3] / "sub" / "x3.png", c)  # nested files count too
    (split_dir / "airplane" / "notes.txt").write_text("not an image")
    test = load_split(spec, "test", str(tmp_path))
    by_label = {int(test.labels[i]): pixels(test, i) for i in range(len(test))}
    assert sorted(by_label) == [0, 3, 44]
    assert np.array_equal(by_label[0], a) and np.array_equal(by_label[44], b) and np.array_equal(by_label[3], c)
    assert test.ref(0)["layout"] == "imagefolder"
    assert find_layout(spec, tmp_path) == "imagefolder"


def test_imagefolder_unknown_class_folder_is_a_usage_error(tmp_path):
    save_png(tmp_path / "resisc45" / "test" / "not a class" / "x.png", rgb())
    with pytest.raises(UsageError, match="not a class"):
        load_split(get_dataset("resisc45"), "test", str(tmp_path)).labels


def test_webdataset_tars(tmp_path):
    spec = get_dataset("kitti_distance")
    (tmp_path / "kitti_distance").mkdir()
    expected = []
    for shard in range(2):
        with wds.TarWriter(str(tmp_path / "kitti_distance" / f"test-{shard:06d}.tar")) as sink:
            for k in range(3):
                a, cls = rgb(3 + k, 4), (shard * 3 + k) % 4
                sink.write({"__key__": f"s{shard}-{k:04d}", "png": png_bytes(a), "cls": str(cls).encode()})
                expected.append((cls, a))
    assert find_layout(spec, tmp_path) == "webdataset"
    test = load_split(spec, "test", str(tmp_path))
    assert test.labels.tolist() == [c for c, _ in expected]
    for i in (5, 0, 3):  # random access, in any order
        assert np.array_equal(pixels(test, i), expected[i][1])
    assert test.ref(4) == {"index": 4, "layout": "webdataset", "shard": "test-000001.tar", "member": "s1-0001.png"}
    with pytest.raises(DatasetNotFound):  # shards for test only: the train split is absent
        load_split(spec, "train", str(tmp_path))


def test_webdataset_multilabel_json(tmp_path):
    spec = get_dataset("voc2007")
    (tmp_path / "voc2007").mkdir()
    a = rgb()
    with wds.TarWriter(str(tmp_path / "voc2007" / "test-000000.tar")) as sink:
        sink.write({"__key__": "a", "png": png_bytes(a), "json": json.dumps({"labels": ["cat", 14]}).encode()})
    test = load_split(spec, "test", str(tmp_path))
    assert np.flatnonzero(test.labels[0]).tolist() == [spec.classes.index("cat"), 14]
    assert np.array_equal(pixels(test, 0), a)


def test_csv_manifest_with_names_and_indices(tmp_path):
    spec = get_dataset("kitti_distance")
    root = tmp_path / "kitti_distance"
    imgs = [rgb(), rgb(), rgb()]
    for i, a in enumerate(imgs):
        save_png(root / "images" / f"{i}.png", a)
    (root / "test.csv").write_text(
        "path,label\n" f"images/0.png,3\n" f"images/1.png,\"{spec.classes[1]}\"\n" f"images/2.png,0\n"
    )
    test = load_split(spec, "test", str(tmp_path))
    assert test.labels.tolist() == [3, 1, 0]
    assert all(np.array_equal(pixels(test, i), imgs[i]) for i in range(3))
    assert test.ref(1)["path"] == "images/1.png"


def test_hateful_memes_jsonl_as_shipped(tmp_path):
    # The challenge's own files: img/<id>.png plus dev_seen.jsonl rows {"id", "img", "label", "text"}.
    spec = get_dataset("hateful_memes")
    root = tmp_path / "hateful_memes"
    imgs = {"01235": rgb(), "42953": rgb()}
    for k, a in imgs.items():
        save_png(root / "img" / f"{k}.png", a)
    rows = [{"id": 42953, "img": "img/42953.png", "label": 1, "text": "x"}, {"id": 1235, "img": "img/01235.png", "label": 0, "text": "y"}]
    (root / "dev_seen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    test = load_split(spec, "test", str(tmp_path))
    assert test.labels.tolist() == [1, 0]
    assert np.array_equal(pixels(test, 0), imgs["42953"])
    assert find_layout(spec, tmp_path) == "manifest"


def test_voc_style_multilabel_manifest(tmp_path):
    spec = get_dataset("voc2007")
    root = tmp_path / "voc2007"
    a, b = rgb(), rgb()
    save_png(root / "a.png", a)
    save_png(root / "b.png", b)
    (root / "test.csv").write_text('path,label\na.png,dog;person\nb.png,"[0, 19]"\n')
    (root / "train.jsonl").write_text(json.dumps({"path": "b.png", "labels": ["cat"]}) + "\n")
    test = load_split(spec, "test", str(tmp_path))
    assert [np.flatnonzero(r).tolist() for r in test.labels] == [[spec.classes.index("dog"), spec.classes.index("person")], [0, 19]]
    assert np.array_equal(pixels(test, 0), a)
    train = load_split(spec, "train", str(tmp_path))
    assert np.flatnonzero(train.labels[0]).tolist() == [spec.classes.index("cat")]


def test_bad_manifest_label_names_the_row(tmp_path):
    root = tmp_path / "kitti_distance"
    save_png(root / "a.png", rgb())
    (root / "test.csv").write_text("path,label\na.png,7\n")
    with pytest.raises(UsageError, match=r"test\.csv:2"):
        load_split(get_dataset("kitti_distance"), "test", str(tmp_path)).labels


def test_torchvision_layout_wins_over_generic_ones(tmp_path):
    write_mnist(tmp_path / "mnist" / "MNIST" / "raw", "t10k", np.zeros((1, 28, 28), np.uint8), np.array([4]))
    write_mnist(tmp_path / "mnist" / "MNIST" / "raw", "train", np.zeros((1, 28, 28), np.uint8), np.array([4]))
    save_png(tmp_path / "mnist" / "test" / "3" / "x.png", rgb())
    assert find_layout(get_dataset("mnist"), tmp_path) == "torchvision"
    assert load_split(get_dataset("mnist"), "test", str(tmp_path)).labels.tolist() == [4]


# ---- absent data, data_root, listing --------------------------------------------------------------------------------


def test_missing_dataset_raises_dataset_not_found_with_full_message(tmp_path):
    spec = get_dataset("food101")
    with pytest.raises(DatasetNotFound) as err:
        load_split(spec, "test", str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg
    assert "'food101'" in msg and str(tmp_path / "food101") in msg
    for layout in ("torchvision Food101", "imagefolder", "webdataset", "manifest"):
        assert layout in msg
    assert "data.vision.ee.ethz.ch" in msg and "never downloads" in msg
    assert err.value.layouts and err.value.origin == spec.origin
    assert find_layout(spec, tmp_path) is None


def test_data_root_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    monkeypatch.delenv("GENBENCH_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_root(None) == tmp_path / "home" / "data"
    assert resolve_data_root("~/x") == tmp_path / "home" / "x"


def test_listing_reports_found_layouts(tmp_path):
    save_png(tmp_path / "resisc45" / "test" / "0" / "a.png", rgb())
    entries = list_entries(str(tmp_path))
    by_name = {e["name"]: e for e in entries}
    assert len(entries) == 24
    assert by_name["resisc45"]["found"] and by_name["resisc45"]["layout"] == "imagefolder"
    assert by_name["resisc45"]["path"] == str(tmp_path / "resisc45")
    assert not by_name["cifar10"]["found"] and by_name["cifar10"]["layout"] is None
    assert by_name["digits"]["found"]
    assert [e["group"] for e in entries].index("fine-grained") > [e["group"] for e in entries].index("common")
    table = format_table(entries).splitlines()
    assert len(table) == 25 and table[0].split()[0] == "name"
    assert any(line.split()[0] == "resisc45" and "imagefolder" in line for line in table)
