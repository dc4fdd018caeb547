"""Science on the toy world: the quickstart run with the toy models (trained on the digits train split) must show
signal that random models cannot, and the checks below must catch a collection whose labels are wrong.

Every threshold is far from the measured value (README, "What the quickstart prints"), so these hold on any CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genbench.metrics.correlation import correlate_with_probe

REPO = Path(__file__).resolve().parents[1]
CHANCE = 0.10


@pytest.fixture(scope="module")
def quickstart(ray_local, tmp_path_factory):
    """The shipped quickstart config (toy CLIP and generator; digits and digits_rot), run end to end on local Ray."""
    from genbench.config import load_config
    from genbench.engine.experiment import run_experiment

    out = tmp_path_factory.mktemp("toy-quickstart")
    records = run_experiment(load_config(str(REPO / "configs" / "quickstart.yaml")), str(out), workers=2,
                             progress=False)
    return records


def _pick(records, dataset, source, shots, strategy=None):
    found = [r for r in records if r["dataset"] == dataset and r["source"] == source and r["shots"] == shots
             and (strategy is None or r["strategy"] == strategy)]
    assert len(found) == 1, (dataset, source, shots, strategy)
    return found[0]


def _fraction(record, metric: str) -> float:
    """A record's score as a fraction (records store percentages of the dataset's metric)."""
    return record["scores"][metric] / 100.0


def _clip():
    from genbench.models.clip import load_clip

    return load_clip("toy")


def _collection(record) -> tuple[list, np.ndarray, np.ndarray]:
    """A collection's images and classes as a downstream trainer reads them (the webdataset library on its tars),
    and its CLIP sidecar embeddings with their classes (genbench's reader)."""
    import webdataset as wds

    from genbench.models.refs import clip_slug
    from genbench.shards.reader import read_external
    from genbench.shards.store import Store

    root = Path(record["collection"])
    shards = sorted(str(p) for p in root.glob("*.tar"))
    images, classes = [], []
    for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode("pil").to_tuple("png;jpg;webp", "cls"):
        images.append(sample[0])
        classes.append(int(sample[1]))
    external = read_external(Store(str(root)), [Path(s).stem for s in shards], clip_slug("toy"))
    return images, np.asarray(classes), (external.emb, external.cls)


def label_alignment(clip, images, classes, dataset: str) -> float:
    """How often CLIP zero-shot names each image's stored class: a collection whose images are of the classes it
    claims scores high, one whose label mapping is wrong scores near chance or below."""
    from genbench.catalog import get_dataset
    from genbench.metrics.zeroshot import class_text_embeddings

    spec = get_dataset(dataset)
    text = class_text_embeddings(clip, spec.classes, spec.templates)
    return float(((clip.encode_images(images) @ text.T).argmax(1) == classes).mean())


def cler_accuracy(emb, cls, test_emb, test_labels) -> float:
    """CLER from a collection's embeddings and classes, as genbench computes it (class sums -> centroids)."""
    from genbench.metrics.cler import centroids, cler_logits

    sums = np.stack([emb[cls == k].sum(0) for k in range(10)])
    counts = np.bincount(cls, minlength=10)
    return float((cler_logits(test_emb, centroids(sums, counts)).argmax(1) == test_labels).mean())


def test_zero_shot_is_far_above_chance_on_digits_and_near_it_on_the_rotated_digits(quickstart):
    digits = _fraction(_pick(quickstart, "digits", "original", 16), "zeroshot")
    rotated = _fraction(_pick(quickstart, "digits_rot", "original", 16), "zeroshot")
    assert digits > 0.6 > 3 * CHANCE
    assert rotated < 0.3 < digits  # a domain the toy models never saw


def test_generated_data_beats_chance_and_stays_below_original_data_at_equal_shots(quickstart):
    for strategy in ("st", "dt", "rd", "np"):
        gen = _pick(quickstart, "digits", "generated", 16, strategy)
        assert _fraction(gen, "cler") > 0.4 and _fraction(gen, "linear_probe") > 0.4, strategy
    original = _pick(quickstart, "digits", "original", 16)
    dt = _pick(quickstart, "digits", "generated", 16, "dt")
    for metric in ("cler", "linear_probe"):
        assert _fraction(original, metric) > _fraction(dt, metric), metric
    # The k-shot sweep climbs: one shot per class is well below sixteen.
    assert _fraction(_pick(quickstart, "digits", "original", 1), "cler") < _fraction(original, "cler") - 0.05


def test_cler_and_the_linear_probe_rank_the_collections_alike(quickstart):
    """Within each dataset (9 collections: 4 strategies, 5 shot counts), not only across the two datasets."""
    assert len(quickstart) == 18
    for dataset in ("digits", "digits_rot"):
        result = correlate_with_probe([r for r in quickstart if r["dataset"] == dataset], measures=("cler",))["cler"]
        assert result["n"] == 9 and result["spearman"] > 0.5 and result["spearman_ci"][0] > 0, dataset


def test_generated_images_are_of_the_class_they_were_made_for_and_a_permuted_mapping_is_caught(quickstart):
    from genbench.catalog import get_dataset
    from genbench.catalog.loaders import load_split

    clip = _clip()
    images, classes, (emb, emb_cls) = _collection(_pick(quickstart, "digits", "generated", 16, "dt"))
    assert len(images) == 160 and np.array_equal(np.bincount(classes), np.full(10, 16))
    aligned = label_alignment(clip, images, classes, "digits")
    assert aligned > 0.6

    test = load_split(get_dataset("digits"), "test")
    test_emb = clip.encode_images([test.image(i) for i in range(len(test))])
    true_cler = cler_accuracy(emb, emb_cls, test_emb, test.labels)
    assert true_cler > 0.6
    # The same collection with its label mapping shifted by one class (3 stored as 4, ...): both checks collapse.
    shifted = (classes + 1) % 10
    assert label_alignment(clip, images, shifted, "digits") < 0.2 < aligned
    assert cler_accuracy(emb, (emb_cls + 1) % 10, test_emb, test.labels) < 0.2 < true_cler


def test_a_collection_with_a_permuted_label_mapping_scores_near_chance_through_genbench_score(quickstart, tmp_path):
    """The DT collection copied with every stored class shifted by one (its sidecars' ``cls``), then scored by the
    product's own path (`genbench score`): CLER and the probe collapse, while the untouched collection scores high.
    The class sums persisted beside the sidecars (``sums/``) are derived from them and would still hold the true
    classes: they are removed, so CLER falls back to the edited sidecars as for a collection written without sums."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from genbench.engine.scoring import score_collection_dir
    from genbench.models.refs import clip_slug

    source = Path(_pick(quickstart, "digits", "generated", 16, "dt")["collection"])
    copy = tmp_path / "permuted"
    shutil.copytree(source, copy)
    sidecars = sorted((copy / "emb" / clip_slug("toy")).glob("*.parquet"))
    assert sidecars
    for path in sidecars:
        table = pq.read_table(path)
        shifted = pa.array((table.column("cls").to_numpy() + 1) % 10, type=table.schema.field("cls").type)
        pq.write_table(table.set_column(table.schema.get_field_index("cls"), "cls", shifted), path)
    shutil.rmtree(copy / "sums")
    metrics = ["cler", "linear_probe"]
    honest = score_collection_dir(str(source), "digits", "toy", metrics=metrics)["scores"]
    permuted = score_collection_dir(str(copy), "digits", "toy", metrics=metrics)["scores"]
    for metric in metrics:
        assert honest[metric] / 100 > 0.6 and permuted[metric] / 100 < 0.2, (metric, honest, permuted)
