"""The reference filter of textual inversion: tiny captioner + tiny BERT built offline, the CLIP filter with the toy
CLIP, threshold semantics, the empty-class policy, small-reference counting and upsampling, and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genbench.adapt.filtering import (CLIP_PROMPT, FilterModels, FilterSettings, NoReferences,
                                      filter_references, parse_filter, small_references)
from genbench.errors import UsageError
from genbench.models import captioning


@pytest.fixture(scope="module")
def digits():
    from genbench.catalog import get_dataset
    from genbench.catalog.loaders import load_split

    spec = get_dataset("digits")
    return spec, load_split(spec, "train")


def _class_images(digits, cls: int, n: int) -> list[Image.Image]:
    _, split = digits
    idx = np.flatnonzero(np.asarray(split.labels) == cls)[:n]
    return [split.image(int(i)) for i in idx]


@pytest.fixture(scope="module")
def tiny_models():
    return FilterModels(captioner=captioning.load_captioner("tiny", device="cpu", max_new_tokens=12),
                        text_model=captioning.load_text_model("tiny", device="cpu"))


@pytest.fixture(scope="module")
def toy_clip():
    from genbench.models.clip import load_clip

    return load_clip("toy", device="cpu")


def _no_pickles(path: Path) -> None:
    names = {p.name for p in path.iterdir()}
    assert "model.safetensors" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], names


def test_tiny_models_build_once_offline_and_load_from_safetensors(tiny_models):
    from transformers import BertModel, Blip2ForConditionalGeneration

    cap_dir, text_dir = captioning.tiny_captioner_dir(), captioning.tiny_text_model_dir()
    assert captioning.tiny_captioner_dir() == cap_dir  # cached: the same directory, not rebuilt
    _no_pickles(cap_dir)
    _no_pickles(text_dir)
    assert (text_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()[:2] == ["[PAD]", "[UNK]"]
    assert isinstance(tiny_models.captioner.model, Blip2ForConditionalGeneration)
    assert isinstance(tiny_models.text_model.model, BertModel)


def test_tiny_captioner_captions_real_images_deterministically(digits, tiny_models):
    images = _class_images(digits, 3, 4) + [Image.new("RGB", (40, 24), "red")]
    captions = tiny_models.captioner.caption(images)
    assert len(captions) == len(images)
    assert all(isinstance(c, str) and c == " ".join(c.split()) for c in captions)
    assert any(captions)  # word salad, but words
    assert tiny_models.captioner.caption(images) == captions  # greedy: same image, same caption
    assert tiny_models.captioner.caption(images[::-1]) == captions[::-1]  # independent of batch neighbours


def test_text_similarity_is_cosine_of_mean_pooled_states(tiny_models):
    text = tiny_models.text_model
    emb = text.embed(["a photo of a zebra", "three", "an unseenword"])
    assert emb.shape[0] == 3 and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = text.similarity(["zebra", "a photo of a zebra", "three"], "zebra")
    assert sims.shape == (3,) and np.all(np.abs(sims) <= 1.0)
    assert sims[0] == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(sims[1:], emb[[0, 1]] @ text.embed(["zebra"])[0], atol=1e-5)


def test_caption_filter_keeps_iff_similarity_reaches_threshold(digits, tiny_models):
    images = _class_images(digits, 0, 4) + _class_images(digits, 1, 4)
    probe = filter_references(images, "zero", FilterSettings(threshold=-1.0), tiny_models)
    assert probe.kept_flags == (True,) * 8 and probe.n_kept == 8  # -1 keeps everything
    sims = np.array(probe.similarities)
    assert len(probe.captions) == 8 and np.all(sims >= -1) and np.all(sims <= 1)
    assert max(sims) < 1.0  # word salad is never the class name itself
    middle = float(np.median(sims))
    res = filter_references(images, "zero", FilterSettings(threshold=middle), tiny_models)
    assert res.similarities == probe.similarities and res.captions == probe.captions
    assert res.kept_flags == tuple(bool(s >= middle) for s in sims)
    assert 0 < res.n_kept < 8
    assert res.kept == [im for im, s in zip(images, sims) if s >= middle]  # candidate order kept
    nothing = filter_references(images, "zero", FilterSettings(threshold=1.0), tiny_models)
    assert nothing.n_kept == 0 and nothing.kept == []
    rec = res.record()
    assert rec["kept"] == res.n_kept and rec["candidates"] == 8 and len(rec["per_candidate"]) == 8
    assert rec["small"] == res.n_kept  # 8x8 digits are all below 32 px


class _FixedCaptions:
    """A captioner whose captions are given: exercises the filter's rule with captions equal to the class name."""

    def __init__(self, captions):
        self.captions = captions

    def caption(self, images):
        return list(self.captions[: len(images)])


def test_caption_equal_to_class_name_is_kept_at_threshold_one_and_empty_caption_scores_minus_one(tiny_models):
    images = [Image.new("RGB", (64, 64), c) for c in ("red", "green", "blue")]
    models = FilterModels(captioner=_FixedCaptions(["golden retriever", "", "golden  retriever"]),
                          text_model=tiny_models.text_model)
    res = filter_references(images, "golden_retriever", FilterSettings(threshold=1.0), models)
    assert res.similarities[1] == -1.0  # empty caption
    assert res.similarities[0] == pytest.approx(1.0, abs=1e-6)
    assert res.kept_flags[1] is False
    assert filter_references(images, "golden_retriever", FilterSettings(threshold=-1.0), models).n_kept == 3


def test_candidates_cap_and_method_none(digits):
    images = _class_images(digits, 2, 10)
    res = filter_references(images, "2", FilterSettings(method="none", candidates=4))
    assert res.n_offered == 10 and res.n_candidates == 4 and res.n_kept == 4
    assert res.kept == images[:4] and res.similarities is None and res.threshold is None


def test_clip_filter_prefers_the_right_class(digits, toy_clip):
    spec, _ = digits
    models = FilterModels(clip=toy_clip)
    right_means, wrong_means = [], []
    for cls in (0, 7):
        right = _class_images(digits, cls, 15)
        wrong = [im for other in range(10) if other != cls for im in _class_images(digits, other, 2)]
        probe = FilterSettings(method="clip", threshold=-1.0)
        r = np.array(filter_references(right, spec.classes[cls], probe, models).similarities)
        w = np.array(filter_references(wrong, spec.classes[cls], probe, models).similarities)
        # The similarity is the cosine with the prompt, as the CLIP encoder computes it.
        expected = toy_clip.encode_images(right) @ toy_clip.encode_texts([CLIP_PROMPT.format(spec.classes[cls])])[0]
        assert np.allclose(r, expected, atol=1e-5)
        right_means.append(r.mean())
        wrong_means.append(w.mean())
        # A threshold between the two distributions keeps a larger share of the right class than of the others.
        cut = float((r.mean() + w.mean()) / 2)
        settings = FilterSettings(method="clip", threshold=cut)
        kept_right = filter_references(right, spec.classes[cls], settings, models).n_kept / len(right)
        kept_wrong = filter_references(wrong, spec.classes[cls], settings, models).n_kept / len(wrong)
        assert kept_right > kept_wrong
    assert all(r > w for r, w in zip(right_means, wrong_means)), (right_means, wrong_means)


def test_a_class_left_without_references_is_named_in_an_exit_2_error():
    err = NoReferences("digits", "5", "0 of 3 candidates reached caption similarity >= 0.5")
    assert isinstance(err, UsageError) and err.field == "adapt.on_empty"
    assert "'digits'" in str(err) and "'5'" in str(err) and "adapt.on_empty: plain" in str(err)
    import pickle  # the exception must survive Ray's transport (pickled by Ray, never by genbench's artefacts)

    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, NoReferences) and str(again) == str(err)


def test_small_references_are_counted(digits):
    images = _class_images(digits, 4, 5)
    assert all(im.size == (8, 8) for im in images)
    big = Image.new("L", (100, 80), 128)
    assert small_references(images, 32) == 5
    assert small_references(images + [big], 32) == 5
    assert small_references(images, 8) == 0


def test_settings_defaults_and_round_trip():
    s = FilterSettings()
    assert (s.method, s.threshold, s.captioner, s.text_model, s.candidates, s.min_side) == (
        "caption", 0.8, "Salesforce/blip2-opt-2.7b", "bert-base-uncased", 100, 32)
    assert hash(s) == hash(FilterSettings())  # frozen: usable as a cache key of loaded filter models
    assert FilterSettings(method="clip").threshold == 0.25
    assert FilterSettings(method="none", threshold=0.3).threshold is None
    assert FilterSettings.from_dict(s.to_dict()) == s
    assert FilterSettings.from_dict({"method": "clip", "threshold": 0.3}).threshold == 0.3
    assert FilterSettings.from_dict(None) == s


@pytest.mark.parametrize("field, value", [
    ("method", "blip"), ("method", None), ("threshold", 1.01), ("threshold", -1.5), ("threshold", math.nan),
    ("threshold", math.inf), ("threshold", "0.8"), ("threshold", True), ("candidates", 0), ("candidates", 10**6),
    ("candidates", 2.5), ("candidates", "100"), ("min_side", 0), ("min_side", 100_000),
    ("caption_tokens", 0), ("caption_tokens", 1000),
])
def test_settings_out_of_range_are_usage_errors(field, value):
    with pytest.raises(UsageError, match=f"adapt.filter.{field}") as err:
        FilterSettings(**{field: value})
    assert err.value.field == f"adapt.filter.{field}"


def test_unknown_settings_key_is_a_usage_error():
    with pytest.raises(UsageError, match="adapt.filter.treshold"):
        FilterSettings.from_dict({"treshold": 0.5})
    with pytest.raises(UsageError, match="adapt.filter"):
        FilterSettings.from_dict(["caption"])
    with pytest.raises(UsageError) as err:
        parse_filter({"threshold": 2}, "sources[1].adapt.filter")
    assert err.value.field == "sources[1].adapt.filter.threshold"
    assert parse_filter({}, "sources[1].adapt.filter") == FilterSettings()


@pytest.mark.parametrize("ref", ["", " tiny", "tiny ", "a b", "../model", "org/repo/extra", "http://x.org/m",
                                 "-bad", "org/" + "x" * 100, "a\x00b", 3, None, "org--x/repo"])
@pytest.mark.parametrize("field", ["captioner", "text_model"])
def test_malformed_model_refs_are_usage_errors(field, ref):
    with pytest.raises(UsageError, match=f"adapt.filter.{field}"):
        FilterSettings(**{field: ref})


def test_model_refs_accept_tiny_hub_ids_and_directories(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    for ref in ("tiny", "Salesforce/blip2-opt-2.7b", "bert-base-uncased", str(tmp_path)):
        FilterSettings(captioner=ref, text_model=ref)
    assert captioning.resolve_ref(str(tmp_path), "f", "x") == ("dir", str(tmp_path.resolve()))
    with pytest.raises(UsageError, match="config.json"):
        FilterSettings(captioner=str(tmp_path / ".."))  # a directory without config.json


def test_preflight_and_loading_refuse_uncached_hub_models_offline():
    # conftest sets HF_HUB_OFFLINE=1; the paper's models are not in this machine's Hugging Face cache.
    never = "genbench-tests/never-published-model"
    with pytest.raises(UsageError, match="adapt.filter.captioner"):
        FilterSettings(captioner=never).check_models()
    with pytest.raises(UsageError, match="adapt.filter.text_model"):
        FilterSettings(captioner="tiny", text_model=never).check_models()
    FilterSettings(captioner="tiny", text_model="tiny").check_models()
    FilterSettings(method="clip", captioner=never).check_models()  # clip loads neither: nothing to check here
    with pytest.raises(UsageError, match="adapt.filter.text_model.*loading failed"):
        captioning.load_text_model(never, device="cpu")
    with pytest.raises(UsageError, match="adapt.filter.captioner.*loading failed"):
        captioning.load_captioner(never, device="cpu")


def test_filter_models_take_refs_from_settings_and_load_lazily():
    settings = FilterSettings(captioner="tiny", text_model="tiny", caption_tokens=5)
    models = FilterModels(settings, device="cpu")
    assert models._loaded == {}  # nothing loaded until a filter needs it
    text = models.text_model
    assert text is models.text_model and text.ref == "tiny"  # loaded once, then kept
    assert "captioner" not in models._loaded
    models.release()
    assert models._loaded == {}
    with pytest.raises(ValueError, match="CLIP"):
        filter_references([Image.new("RGB", (8, 8))], "0", FilterSettings(method="clip"), models)
