"""The model layer with real tiny models built offline: build -> save -> reload -> generate / encode."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub: nothing may be fetched

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from genbench.errors import UsageError
from genbench.models.cache import default_cache_dir
from genbench.models.clip import load_clip
from genbench.models.generator import load_generator
from genbench.models.bpe import load_clip_tokenizer
from genbench.models.build import built_clip_dir, built_pipeline_dir


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("genbench-cache"))


@pytest.fixture(scope="module")
def tiny_gen(cache):
    return load_generator("tiny", device="cpu", cache_dir=cache)


def _pixels(images) -> list[np.ndarray]:
    return [np.asarray(im) for im in images]


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path))
    assert default_cache_dir() == str(tmp_path)
    monkeypatch.delenv("GENBENCH_CACHE")
    assert default_cache_dir().endswith(os.path.join(".cache", "genbench"))


def test_tiny_sd_is_saved_once_as_a_diffusers_dir(cache, tiny_gen):
    path = built_pipeline_dir("tiny-sd", cache)
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index.get("safety_checker") in (None, [None, None])
    weights = path / "unet" / "diffusion_pytorch_model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert built_pipeline_dir("tiny-sd", cache) == path  # second call reuses, does not rebuild
    assert weights.stat().st_mtime_ns == mtime
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
    assert type(tiny_gen.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert tiny_gen.pipe.scheduler.config.algorithm_type == "dpmsolver++"


def test_tiny_generation_size_and_determinism(tiny_gen):
    args = dict(steps=2, guidance_scale=5.0)
    prompts, negatives = ["a photo of a dog", "a photo of a dog"], [None, "blurry"]
    a = tiny_gen.generate(prompts, negatives, [11, 22], **args)
    assert tiny_gen.default_size == 64
    assert [im.size for im in a] == [(64, 64), (64, 64)] and all(im.mode == "RGB" for im in a)
    again = tiny_gen.generate(prompts, negatives, [11, 22], **args)
    assert all((x == y).all() for x, y in zip(_pixels(a), _pixels(again)))
    # Same sample at batch position 1 instead of 0 (same batch size): bitwise identical on CPU float32.
    swapped = tiny_gen.generate(prompts[::-1], negatives[::-1], [22, 11], **args)
    assert (_pixels(a)[0] == _pixels(swapped)[1]).all() and (_pixels(a)[1] == _pixels(swapped)[0]).all()
    assert (_pixels(a)[0] != _pixels(a)[1]).any()


def test_tiny_generation_custom_size_and_img2img(tiny_gen):
    out = tiny_gen.generate(["a bird"], [None], [3], steps=1, guidance_scale=1.0, height=32, width=48)
    assert out[0].size == (48, 32)
    init = Image.new("RGB", (40, 40), (200, 30, 30))
    i2i = tiny_gen.generate(["a bird"], [None], [3], steps=2, guidance_scale=1.0, init_images=[init], strength=0.5)
    assert i2i[0].size == (64, 64)
    # The init image is really used: another init image with the same seed gives another output.
    blue = tiny_gen.generate(["a bird"], [None], [3], steps=2, guidance_scale=1.0,
                             init_images=[Image.new("RGB", (40, 40), (20, 30, 220))], strength=0.5)
    assert (_pixels(blue)[0] != _pixels(i2i)[0]).any()
    with pytest.raises(UsageError) as err:
        tiny_gen.generate(["a"], [None], [1], steps=2, guidance_scale=1.0, init_images=[init], strength=1.5)
    assert err.value.field == "strength"
    with pytest.raises(UsageError) as err:  # 2 steps x 0.25 leaves no denoising step to run
        tiny_gen.generate(["a"], [None], [1], steps=2, guidance_scale=1.0, init_images=[init], strength=0.25)
    assert err.value.field == "strength"
    with pytest.raises(UsageError) as err:
        tiny_gen.generate(["a"], [None], [1], steps=2, guidance_scale=1.0, height=30)
    assert err.value.field == "height"
    with pytest.raises(UsageError) as err:
        tiny_gen.generate(["a", "b"], [None], [1, 2], steps=2, guidance_scale=1.0)
    assert err.value.field == "negative_prompts"


def test_tokenizer_matches_open_clip_ids(tiny_gen):
    reference = open_clip.get_tokenizer("ViT-B-32")
    strings = ["a photo of a Golden Retriever.", "itap of the 747-400 aircraft!!", "café  ## #hash  o'neill's"]
    for tok in (tiny_gen.pipe.tokenizer, load_clip_tokenizer()):
        for s in strings:
            ours = tok(s)["input_ids"]
            theirs = [int(t) for t in reference([s])[0] if int(t) != 0]
            assert ours == theirs, s
    assert len(tiny_gen.pipe.tokenizer) == 49408


def test_null_generator_is_seeded_noise():
    gen = load_generator("null")
    a = gen.generate(["x", "y"], [None, None], [1, 2], steps=1, guidance_scale=1.0, height=16, width=24)
    b = gen.generate(["z"], ["n"], [1], steps=1, guidance_scale=7.0, height=16, width=24)
    assert a[0].size == (24, 16) and a[0].mode == "RGB"
    assert (np.asarray(a[0]) == np.asarray(b[0])).all() and (np.asarray(a[0]) != np.asarray(a[1])).any()


def test_tiny_clip_loads_from_local_dir_and_encodes_unit_vectors(cache):
    path = built_clip_dir("tiny-clip", cache)
    assert (path / "open_clip_config.json").is_file() and (path / "open_clip_model.safetensors").is_file()
    enc = load_clip("tiny", device="cpu", cache_dir=cache)
    assert (enc.slug, enc.dim, enc.is_tiny) == ("tiny", 64, True)
    assert "size=(32, 32)" in enc.preprocess_id or "size=32" in enc.preprocess_id
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)) for i in range(5)]
    img = enc.encode_images(images, batch_size=2)
    txt = enc.encode_texts(["a photo of a dog.", "a photo of a cat."])
    assert img.shape == (5, 64) and txt.shape == (2, 64) and img.dtype == txt.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(txt[0], txt[1])
    # A second, independent load through open_clip's local-dir path gives the same weights, hence the same vectors.
    again = load_clip("tiny", device="cpu", cache_dir=cache)
    np.testing.assert_array_equal(again.encode_images(images, batch_size=2), img)
    # Another batch size may change float summation order, not the result beyond float32 noise.
    np.testing.assert_allclose(again.encode_images(images, batch_size=5), img, atol=1e-5)
    np.testing.assert_array_equal(again.encode_texts(["a photo of a dog.", "a photo of a cat."]), txt)
    # And the plain-directory reference loads the very same model (a batch of one: equal up to float32 noise).
    direct = load_clip(str(path), device="cpu")
    np.testing.assert_allclose(direct.encode_texts(["a photo of a dog."]), txt[:1], atol=1e-6)
    with torch.no_grad():
        raw = open_clip.create_model_and_transforms(f"local-dir:{path}")[0].eval()
        ids = open_clip.get_tokenizer(f"local-dir:{path}")(["a photo of a dog."])
        ref = torch.nn.functional.normalize(raw.encode_text(ids), dim=-1).numpy()
    np.testing.assert_allclose(ref, txt[:1], atol=1e-6)


@pytest.mark.parametrize("ref", ["nope", "", "ViT-B-32:not-a-tag", "/no/such/dir/for/clip",
                                 "hf-hub:genbench-test/no-such-model", "ViT-B-23:openai"])
def test_unknown_clip_reference(ref):
    with pytest.raises(UsageError) as err:
        load_clip(ref)
    assert err.value.field == "clip"


def test_untrained_models_are_named_by_their_references():
    """tiny, null and random:<config> generators and the tiny and ARCH:random CLIP models have no trained weights:
    every result made with them carries the notice."""
    from genbench.models import refs

    for ref in ("tiny", "null", "random:sd21-base", "random:tiny-sd"):
        assert refs.generator_untrained(ref)
    for ref in ("stabilityai/stable-diffusion-2-1-base", "/models/sd21", None):
        assert not refs.generator_untrained(ref)
    assert refs.clip_untrained("tiny") and refs.clip_untrained("ViT-B-32:random")
    assert not refs.clip_untrained("ViT-B-32:openai") and not refs.clip_untrained(None)


def test_untrained_clip_and_generator_reach_the_record():
    from genbench.catalog import get_dataset
    from genbench.report.records import build_record, notice

    digits = get_dataset("digits")
    job = {"source": "generated", "variant": "v", "run_seed": 0, "options": {"generator": "random:sd21-base"}}
    by_gen = build_record(dataset=digits, job=job, shots=1, clip="ViT-B-32:openai", n_train=10, n_test=540, scores={},
                          manifest={"untrained_models": ["generator random:sd21-base"]})
    by_clip = build_record(dataset=digits, job={**job, "options": {}}, shots=1, clip="ViT-B-32:random", n_train=10,
                           n_test=540, scores={}, manifest={"untrained_models": []})
    trained = build_record(dataset=digits, job={**job, "options": {"generator": "stabilityai/stable-diffusion-2-1-base"}},
                           shots=1, clip="ViT-B-32:openai", n_train=10, n_test=540, scores={},
                           manifest={"untrained_models": []})
    assert by_gen["untrained_models"] and by_clip["untrained_models"] and not trained["untrained_models"]
    assert "generator random:sd21-base" in notice([by_gen]) and "CLIP ViT-B-32:random" in notice([by_clip])
    assert notice([trained]) is None
    # A trained generator scored with an untrained CLIP is not blamed.
    mixed = build_record(dataset=digits, job={**job, "options": {"generator": "stabilityai/stable-diffusion-2-1-base"}},
                         shots=1, clip="tiny", n_train=10, n_test=540, scores={}, manifest={"untrained_models": []})
    assert notice([mixed]).count("generator") == 0 and "CLIP tiny" in notice([mixed])


@pytest.mark.parametrize("ref", ["nope", "", "random:no-such-config", "not a hub id", "genbench-test/no-such-model"])
def test_unknown_generator_reference(ref):
    with pytest.raises(UsageError) as err:
        load_generator(ref)
    assert err.value.field == "generator"


def test_bad_generator_options():
    with pytest.raises(UsageError) as err:
        load_generator("null", scheduler="euler-ish")
    assert err.value.field == "scheduler"
    with pytest.raises(UsageError) as err:
        load_generator("null", dtype="int8")
    assert err.value.field == "dtype"


def test_sd21_base_config_is_the_published_architecture():
    """The benchmark's random-weight SD 2.1-base has exactly the published parameter counts (built on 'meta': no memory)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from genbench.models.cache import load_config

    cfg = load_config("sd21-base")
    with torch.device("meta"):
        unet = UNet2DConditionModel(**cfg["unet"])
        vae = AutoencoderKL(**cfg["vae"])
        text = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert (count(unet), count(vae), count(text)) == (865_910_724, 83_653_863, 340_387_840)


@pytest.mark.parametrize("name", ["tiny-sd", "sd21-base"])
def test_shipped_pipeline_configs_build_their_scheduler(name):
    from diffusers import DPMSolverMultistepScheduler

    from genbench.models.cache import load_config

    sched = DPMSolverMultistepScheduler(**load_config(name)["scheduler"])
    assert sched.config.algorithm_type == "dpmsolver++"


def test_weighted_prompts_change_only_what_is_emphasised(tiny_gen):
    args = dict(steps=1, guidance_scale=1.0)  # guidance off: one UNet pass; the prompt embeddings are what is tested
    plain = tiny_gen.generate(["a photo of a cat"], ["blurry"], [5], **args)
    # No emphasis syntax: the weighted path conditions on the same embeddings as diffusers' own encoding.
    same = tiny_gen.generate(["a photo of a cat"], ["blurry"], [5], weighted=True, **args)
    diff = np.abs(_pixels(plain)[0].astype(int) - _pixels(same)[0].astype(int)).max()
    assert diff <= 1  # float32 noise at most one 8-bit level
    emphasised = tiny_gen.generate(["a photo of a ((cat:3.0))"], ["blurry"], [5], weighted=True, **args)
    assert np.abs(_pixels(emphasised)[0].astype(int) - _pixels(plain)[0].astype(int)).max() > 1


def test_build_once_is_safe_with_concurrent_builders(tmp_path):
    """Several builders race for one target: exactly one complete copy wins, no temp dirs remain, later calls reuse it."""
    import threading

    from genbench.models.cache import build_once

    target = tmp_path / "models" / "thing-abc"
    built: list[str] = []
    barrier = threading.Barrier(4)

    def builder(out):
        barrier.wait()  # all four are mid-build at the same time
        (out / "weights.bin").write_bytes(os.urandom(64))
        (out / "done.json").write_text("{}")
        built.append(str(out))

    results = []
    threads = [threading.Thread(target=lambda: results.append(build_once(target, builder, "done.json"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 4 and results == [target] * 4
    assert sorted(p.name for p in target.iterdir()) == ["done.json", "weights.bin"]
    assert [p.name for p in target.parent.iterdir()] == ["thing-abc"]
    before = (target / "weights.bin").read_bytes()
    assert build_once(target, builder, "done.json") == target and len(built) == 4  # no rebuild
    assert (target / "weights.bin").read_bytes() == before
