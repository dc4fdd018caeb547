"""Knowledge injection on the toy world (genbench.adapt): textual inversion and LoRA learned from 5 shots per class
of digits_rot, a domain the toy models never saw, make generated data score higher than plain toy generation; per-class
artefacts are committed atomically, skipped on rerun, and refused for another base model or dataset."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from genbench.errors import UsageError

DATASET = "digits_rot"


@pytest.fixture(scope="module")
def world():
    from genbench.catalog import get_dataset
    from genbench.catalog.loaders import load_split
    from genbench.models.clip import load_clip

    spec = get_dataset(DATASET)
    test = load_split(spec, "test")
    clip = load_clip("toy")
    return spec, clip, clip.encode_images([test.image(i) for i in range(len(test))]), test.labels


def _generated_cler(world, generator, names) -> float:
    """CLER of 16 DT-style images per class (10 denoising steps) generated with ``names[k]`` naming class k."""
    spec, clip, test_emb, labels = world
    templates = tuple(spec.templates) + (spec.simple_template,)
    images, classes = [], []
    for k, name in enumerate(names):
        if callable(name):
            name = name()
        images += generator.generate([templates[j % len(templates)].format(name) for j in range(16)], [None] * 16,
                                     list(range(16 * k, 16 * k + 16)), steps=10, guidance_scale=3.0)
        classes += [k] * 16
    emb, classes = clip.encode_images(images), np.asarray(classes)
    cents = np.stack([emb[classes == k].mean(0) for k in range(len(names))])
    cents /= np.linalg.norm(cents, axis=1, keepdims=True)
    return float(((test_emb @ cents.T).argmax(1) == labels).mean())


def test_ti_and_lora_on_five_rotated_shots_beat_plain_toy_generation(world, tmp_path):
    from genbench.adapt.lora import LoRASettings
    from genbench.adapt.run import adapt_dataset, apply
    from genbench.adapt.textual_inversion import TISettings
    from genbench.models.generator import load_generator

    spec = world[0]
    plain = _generated_cler(world, load_generator("toy"), list(spec.classes))

    gen = load_generator("toy")
    ti = adapt_dataset(gen.pipe, "toy", DATASET, "ti", TISettings(steps=40, lr=3e-2, batch_size=16), 5, 0,
                       str(tmp_path))
    with_ti = _generated_cler(world, gen, [lambda k=k: apply(gen.pipe, ti, "toy", DATASET, k)
                                           for k in range(spec.num_classes)])

    gen = load_generator("toy")
    lora = adapt_dataset(gen.pipe, "toy", DATASET, "lora", LoRASettings(steps=120, lr=8e-3, batch_size=32), 5, 0,
                         str(tmp_path), scope="dataset")
    with_lora = _generated_cler(world, gen, [lambda k=k: apply(gen.pipe, lora, "toy", DATASET, k)
                                             for k in range(spec.num_classes)])
    # Measured with these (shortened) settings on the development machine: plain 14.8, TI 19.3, LoRA 17.4; longer
    # training does more (BENCHMARKS.md, "Knowledge injection on the toy world").
    assert with_ti > plain and with_lora > plain, (plain, with_ti, with_lora)
    assert len(list(ti.dir.glob("c*.safetensors"))) == spec.num_classes and (lora.dir / "dataset.json").is_file()


def test_finished_classes_are_kept_an_interrupted_one_is_redone_and_foreign_artefacts_refused(tmp_path):
    from genbench.adapt.run import adapt_dataset
    from genbench.adapt.textual_inversion import TISettings
    from genbench.models.generator import load_generator

    gen = load_generator("toy")
    settings = TISettings(steps=2, lr=1e-2, batch_size=2)
    store = adapt_dataset(gen.pipe, "toy", DATASET, "ti", settings, 2, 0, str(tmp_path), classes=[0, 1])
    done = {p.name: p.stat().st_mtime_ns for p in store.dir.iterdir()}
    assert sorted(done) == ["c0000.json", "c0000.safetensors", "c0001.json", "c0001.safetensors"]
    # Class 1 was "killed" after its weights and before its record: a rerun redoes class 1 only.
    os.remove(store.dir / "c0001.json")
    again = adapt_dataset(gen.pipe, "toy", DATASET, "ti", settings, 2, 0, str(tmp_path), classes=[0, 1])
    assert again.dir == store.dir
    assert (store.dir / "c0000.safetensors").stat().st_mtime_ns == done["c0000.safetensors"]
    assert (store.dir / "c0001.json").is_file() and again.done(1)
    assert not [p for p in store.dir.iterdir() if p.name.startswith(".")]  # no scratch left behind
    record = json.loads((store.dir / "c0000.json").read_text())
    assert record["identity"]["base"] == "toy" and record["token"] == "<|digits_rot_0|>"
    with pytest.raises(UsageError, match="made for base 'stabilityai/stable-diffusion-2-1-base'"):
        store.weights(0, "stabilityai/stable-diffusion-2-1-base", DATASET)
    with pytest.raises(UsageError, match="dataset 'digits'"):
        store.weights(0, "toy", "digits")
    assert {p.suffix for p in store.dir.iterdir()} == {".json", ".safetensors"}


@pytest.mark.parametrize("make", [
    lambda: __import__("genbench.adapt.textual_inversion", fromlist=["x"]).TISettings(steps=0),
    lambda: __import__("genbench.adapt.textual_inversion", fromlist=["x"]).TISettings(lr=2.0),
    lambda: __import__("genbench.adapt.lora", fromlist=["x"]).LoRASettings(rank=0),
    lambda: __import__("genbench.adapt.lora", fromlist=["x"]).LoRASettings(lr=-1e-4),
])
def test_settings_out_of_range_name_the_field(make):
    with pytest.raises(UsageError, match=r"adapt\.(steps|lr|rank)"):
        make()
