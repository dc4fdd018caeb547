"""Prompt strategies (GenBench Section 2.3 / Table 6) as tests: each strategy yields the documented kind of prompt,
deterministically across processes, and RD's emphasis is real prompt weighting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genbench.catalog import dataset_names, get_dataset
from genbench.catalog.spec import DatasetSpec
from genbench.errors import UsageError
from genbench.prompts.weighting import parse_weighted, token_weights, weighted_prompt_embeds
from genbench.prompts import (
    NP_QUALITY,
    RD_QUALITY,
    STRATEGIES,
    CategoryEnhancer,
    make_prompt,
    parse_strategy,
    tig_init_index,
)

REPO = Path(__file__).resolve().parents[1]


def _spec(name: str, classes: list[str], templates: list[str] | None = None) -> DatasetSpec:
    return DatasetSpec.from_dict(
        {
            "name": name, "display_name": name, "group": "toy", "task": "multiclass", "metric": "accuracy",
            "test_size": 1, "classes": classes, "templates": templates or ["a photo of a {}.", "a sketch of a {}."],
            "loader": {"kind": "none"}, "origin": "test",
        },
        where=name,
    )


@pytest.fixture(scope="module")
def cifar():
    # The paper's Table 6 examples are CIFAR-style object classes; use the catalog entry when it is there.
    if "cifar10" in dataset_names():
        return get_dataset("cifar10")
    return _spec("cifar10", ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Token-by-token decoding of a tiny model is dominated by thread hand-offs on a loaded 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def enhancer(cache_dir):
    return CategoryEnhancer("tiny", device="cpu", cache_dir=cache_dir, max_new_tokens=10)


def test_parse_strategy_accepts_case_and_combination_order():
    assert parse_strategy("ST") == "st"
    assert parse_strategy("NP+RD") == "np+rd"
    assert parse_strategy(" rd+np ") == "np+rd"
    assert all(parse_strategy(s.upper()) == s for s in STRATEGIES)
    for bad in ("xx", "np+np", "st+dt", ""):
        with pytest.raises(UsageError) as err:
            parse_strategy(bad)
        assert err.value.field == "strategy" and "np+rd" in str(err.value)


# Table 6 of the paper, one row per strategy, for its example classes. Each case: (dataset, class, shot, strategy,
# prompt, negative prompt) under run seed 0. The shot is one whose seeded template choice is the template Table 6
# prints, so the DT-based rows reproduce the paper's strings; the negative classes are our seeded draw (Table 6's are
# the paper's own random draw), followed by the quality negatives.
_Q = ", bad shape, misfigured"
_RD = ", ((sharp focus)), ((highly detailed)), ((hires))"
TABLE6 = [
    ("cifar10", "airplane", 0, "st", "airplane", None),
    ("oxford_pets", "British Shorthair", 0, "st", "British Shorthair", None),
    ("stanford_cars", "Acura TL Sedan 2012", 0, "st", "Acura TL Sedan 2012", None),
    ("fgvc_aircraft", "737-400", 0, "st", "737-400", None),
    ("cifar10", "airplane", 0, "st-photo", "a photo of airplane", None),
    ("cifar10", "airplane", 12, "dt", "a black and white photo of the airplane.", None),
    ("oxford_pets", "British Shorthair", 0, "dt", "a photo of a British Shorthair, a type of pet.", None),
    ("stanford_cars", "Acura TL Sedan 2012", 3, "dt", "a photo of my old Acura TL Sedan 2012.", None),
    ("fgvc_aircraft", "737-400", 1, "dt", "a photo of a 737-400, a type of aircraft.", None),
    # Our GTSRB templates are CLIP's ('a close up photo of a "{}" traffic sign.'); Table 6 prints a variant.
    ("gtsrb", "red and white circle no truck entry", 0, "dt",
     'a close up photo of a "red and white circle no truck entry" traffic sign.', None),
    ("cifar10", "airplane", 37, "rd", "a photo of the big airplane." + _RD, None),
    ("fgvc_aircraft", "737-400", 1, "rd", "a photo of a 737-400, a type of aircraft." + _RD, None),
    ("cifar10", "airplane", 6, "np", "a good photo of the airplane.", "cat, bird, automobile, truck, dog" + _Q),
    ("oxford_pets", "British Shorthair", 0, "np", "a photo of a British Shorthair, a type of pet.",
     "japanese chin, Egyptian Mau, american bulldog, great pyrenees, newfoundland" + _Q),
    ("fgvc_aircraft", "737-400", 1, "np", "a photo of a 737-400, a type of aircraft.",
     "Boeing 717, Falcon 900, C-130, 767-400, A340-200" + _Q),
    ("fgvc_aircraft", "737-400", 1, "np+rd", "a photo of a 737-400, a type of aircraft." + _RD,
     "Boeing 717, Falcon 900, C-130, 767-400, A340-200" + _Q),
    ("cifar10", "airplane", 6, "dt+np+rd", "a good photo of the airplane." + _RD, "cat, bird, automobile, truck, dog" + _Q),
    ("stanford_cars", "Acura TL Sedan 2012", 3, "ra", "a photo of my old Acura TL Sedan 2012.", None),
]


@pytest.mark.parametrize("dataset,name,shot,strategy,text,negative", TABLE6,
                         ids=[f"{c[3]}-{c[0]}-{c[2]}" for c in TABLE6])
def test_table6_rows(dataset, name, shot, strategy, text, negative):
    spec = get_dataset(dataset)
    p = make_prompt(strategy, spec, spec.classes.index(name), shot, run_seed=0)
    assert (p.text, p.negative) == (text, negative)


def test_st_is_the_class_name_and_does_not_vary(cifar, digits):
    cat = cifar.classes.index("cat")
    p = make_prompt("st", cifar, cat, 3, run_seed=0)
    assert p == make_prompt("ST", cifar, cat, 99, run_seed=5)  # ST does not vary per sample
    assert (p.text, p.negative, p.strategy) == ("cat", None, "st")
    assert make_prompt("st-photo", digits, 7, 0, run_seed=0).text == "a photo of 7"
    with pytest.raises(UsageError):
        make_prompt("st", digits, 10, 0, run_seed=0)


def test_table2_row_names_parse_to_the_combinations_on_dt():
    assert [parse_strategy(s) for s in ("DT+NP", "dt+np+rd", "np+dt", "dt+rd")] == ["np", "np+rd", "np", "rd"]
    with pytest.raises(UsageError):
        parse_strategy("dt+ce")


def test_dt_uses_a_dataset_template_chosen_per_sample(cifar):
    prompts = [make_prompt("dt", cifar, 3, shot, run_seed=0) for shot in range(40)]
    assert all(p.template in cifar.templates and p.text == p.template.format("cat") for p in prompts)
    assert len({p.template for p in prompts}) > 5  # the choice varies across samples
    assert prompts == [make_prompt("dt", cifar, 3, shot, run_seed=0) for shot in range(40)]
    other_seed = [make_prompt("dt", cifar, 3, shot, run_seed=1) for shot in range(40)]
    assert other_seed != prompts


def test_ce_sentence_is_deterministic_and_may_drift_unless_prepended(cifar, enhancer):
    cat = cifar.classes.index("cat")
    ce = [make_prompt("ce", cifar, cat, shot, run_seed=0, enhancer=enhancer) for shot in range(3)]
    for p in ce:
        assert p.strategy == "ce" and p.negative is None and p.text and p.text != "cat"
    assert len({p.text for p in ce}) == 3  # each sample its own sentence
    assert make_prompt("ce", cifar, cat, 1, run_seed=0, enhancer=enhancer) == ce[1]
    # The tiny vocabulary cannot produce this name: by default the sentence drifts (the paper's finding) ...
    drifted = enhancer.sentences("Zyzzyva Quux", seed=3)
    assert "Zyzzyva" not in drifted and drifted
    # ... and the option puts the class name in front of it.
    assert enhancer.sentences("Zyzzyva Quux", seed=3, prepend_class=True) == f"Zyzzyva Quux, {drifted}"
    forced = make_prompt("ce", cifar, cat, 0, run_seed=0, enhancer=enhancer, ce_prepend=True)
    assert "cat" in forced.text.lower().replace(",", " ").split()
    with pytest.raises(UsageError) as err:
        make_prompt("ce", cifar, cat, 0, run_seed=0)
    assert err.value.field == "enhancer"


def test_tiny_t5_is_saved_once_as_safetensors_and_reloaded(enhancer, tmp_path):
    from genbench.models.t5_tiny import tiny_t5_dir

    first = tiny_t5_dir(str(tmp_path))  # a fresh cache: built here, then found
    assert tiny_t5_dir(str(tmp_path)) == first and first.name.startswith("tiny-t5-")
    assert len(list(first.parent.iterdir())) == 1  # no temp dirs left behind
    files = {p.name for p in first.iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert not any(f.endswith((".bin", ".pkl", ".pt")) for f in files)
    reloaded = CategoryEnhancer("tiny", device="cpu", cache_dir=str(tmp_path), max_new_tokens=10)
    assert reloaded.sentences("dog", 11) == enhancer.sentences("dog", 11)  # same weights from the saved copy


def test_rd_emphasises_the_restrictive_words_not_the_class(cifar):
    dog = cifar.classes.index("dog")
    p = make_prompt("rd", cifar, dog, 0, run_seed=0)
    dt = make_prompt("dt", cifar, dog, 0, run_seed=0)
    assert p.text == dt.text + ", ((sharp focus)), ((highly detailed)), ((hires))" and p.negative is None
    weights = dict(parse_weighted(p.text))
    assert all(weights[term] == pytest.approx(1.21) for term in RD_QUALITY)
    assert weights[dt.text + ", "] == 1.0  # the DT part, class name included, keeps weight 1
    assert make_prompt("rd", cifar, dog, 0, run_seed=0, emphasis="literal").text == p.text  # sent as text
    with pytest.raises(UsageError):
        make_prompt("rd", cifar, dog, 0, run_seed=0, emphasis="loud")
    # Brackets inside a class name stay text, not emphasis.
    odd = _spec("odd", ["Boeing 737 (200)", "other"], ["a photo of a {}."])
    segments = parse_weighted(make_prompt("rd", odd, 0, 0, 0).text)
    assert segments[0] == ("a photo of a Boeing 737 (200)., ", 1.0)
    assert make_prompt("rd", odd, 0, 0, 0, emphasis="literal").text.startswith("a photo of a Boeing 737 (200).")


def _negative_classes(negative: str, spec: DatasetSpec) -> list[str]:
    parts = [x.strip() for x in negative.split(",")]
    assert parts[-len(NP_QUALITY):] == list(NP_QUALITY)
    return parts[: -len(NP_QUALITY)]


def test_np_negative_lists_up_to_five_other_classes_plus_quality_terms(cifar):
    cat = cifar.classes.index("cat")
    seen: set[tuple[str, ...]] = set()
    for shot in range(20):
        p = make_prompt("np", cifar, cat, shot, run_seed=0)
        assert p.text == make_prompt("dt", cifar, cat, shot, run_seed=0).text and p.strategy == "np"
        names = _negative_classes(p.negative, cifar)
        assert len(names) == 5 == len(set(names))
        assert "cat" not in names and set(names) <= set(cifar.classes)
        seen.add(tuple(names))
    assert len(seen) > 1  # sampled per sample
    small = _spec("small", ["a", "b", "c"])
    assert sorted(_negative_classes(make_prompt("np", small, 1, 0, 0).negative, small)) == ["a", "c"]


def test_np_rd_negatives_with_brackets_stay_text_under_weighting():
    odd = _spec("odd", ["kite", "cherimoya (custard apple)"], ["a photo of a {}."])
    both = make_prompt("np+rd", odd, 0, 0, 0)
    assert both.negative == r"cherimoya \(custard apple\), bad shape, misfigured"
    assert parse_weighted(both.negative) == [("cherimoya (custard apple), bad shape, misfigured", 1.0)]
    # Unweighted prompts pass the names as they are.
    assert make_prompt("np", odd, 0, 0, 0).negative == "cherimoya (custard apple), bad shape, misfigured"
    assert make_prompt("np+rd", odd, 0, 0, 0, emphasis="literal").negative == make_prompt("np", odd, 0, 0, 0).negative


def test_np_rd_combines_both(cifar):
    cat = cifar.classes.index("cat")
    both = make_prompt("rd+np", cifar, cat, 4, run_seed=2)
    assert both.strategy == "np+rd"
    assert both.text == make_prompt("rd", cifar, cat, 4, run_seed=2).text
    assert both.negative == make_prompt("np", cifar, cat, 4, run_seed=2).negative


def test_tig_prompt_and_init_index(cifar):
    for shot in range(5):
        tig, dt = make_prompt("tig", cifar, 2, shot, 0), make_prompt("dt", cifar, 2, shot, 0)
        assert (tig.text, tig.template, tig.strategy) == (dt.text, dt.template, "tig")
    picks = [tig_init_index(2, shot, 4, run_seed=0, dataset="cifar10") for shot in range(8)]
    assert sorted(picks[:4]) == [0, 1, 2, 3] and picks[4:] == picks[:4]  # every original used equally
    assert picks == [tig_init_index(2, shot, 4, 0, "cifar10") for shot in range(8)]
    assert [tig_init_index(3, s, 4, 0, "cifar10") for s in range(4)] != picks[:4] or \
        [tig_init_index(4, s, 4, 0, "cifar10") for s in range(4)] != picks[:4]
    with pytest.raises(UsageError):
        tig_init_index(2, 0, 0, 0, "cifar10")


_CHILD = """
import json, sys
from genbench.catalog import get_dataset
from genbench.prompts import CategoryEnhancer, make_prompt, tig_init_index
spec = get_dataset("digits")
enh = CategoryEnhancer("tiny", device="cpu", cache_dir=sys.argv[1], max_new_tokens=10)
out = [make_prompt(s, spec, c, k, 7, enhancer=enh).__dict__ for s in ("dt", "np", "np+rd", "ce") for c in (1, 8) for k in (0, 5)]
out.append(tig_init_index(3, 2, 7, 7, "digits"))
print(json.dumps(out))
"""


def test_prompts_are_identical_in_another_process(digits, enhancer, cache_dir):
    here = [make_prompt(s, digits, c, k, 7, enhancer=enhancer).__dict__ for s in ("dt", "np", "np+rd", "ce")
            for c in (1, 8) for k in (0, 5)]
    here.append(tig_init_index(3, 2, 7, 7, "digits"))
    # A different str hash() seed than ours; the child loads the tiny T5 the parent saved.
    env = dict(os.environ, PYTHONHASHSEED="12345", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", _CHILD, cache_dir], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(res.stdout.strip().splitlines()[-1]) == here


# --- prompt weighting -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a ((cat)) on [grass]", [("a ", 1.0), ("cat", 1.21), (" on ", 1.0), ("grass", 1 / 1.1)]),
        ("(dog:1.5), x", [("dog", 1.5), (", x", 1.0)]),
        ("((a (b:2)))", [("a ", 1.21), ("b", 2.42)]),
        ("[[x]] y", [("x", 1 / 1.21), (" y", 1.0)]),
        (r"a \(b\) c", [("a (b) c", 1.0)]),
        ("stray ) and ] stay, ratio 3:4", [("stray ) and ] stay, ratio 3:4", 1.0)]),
        ("(open to the end", [("open to the end", 1.1)]),
        ("plain", [("plain", 1.0)]),
        ("", [("", 1.0)]),
    ],
)
def test_parse_weighted(text, expected):
    got = parse_weighted(text)
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


@pytest.fixture(scope="module")
def clip_text():
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    bpe = SimpleTokenizer()  # open_clip's bundled vocabulary: nothing is fetched
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    # open_clip names its specials <start_of_text>/<end_of_text>; Hugging Face's CLIPTokenizer uses OpenAI's names.
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(t, t): i for t, i in bpe.encoder.items()}
    tok = CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=77)
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=len(bpe.encoder), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77)
    return tok, CLIPTextModel(cfg).eval()


def test_weighted_embeddings_change_only_the_emphasised_tokens(clip_text):
    tok, enc = clip_text
    weighted = "a photo of a ((red panda)), sharp [blurry] focus"
    plain = "a photo of a red panda, sharp blurry focus"
    emb = weighted_prompt_embeds(tok, enc, [weighted, plain])
    assert emb.shape == (2, 77, 32)
    ids, weights = token_weights(tok, weighted)
    assert ids == token_weights(tok, plain)[0]  # the plain text is what gets tokenised
    names = tok.convert_ids_to_tokens(ids)
    emphasised = {i for i, w in enumerate(weights) if w != 1.0}
    assert {names[i] for i in emphasised} == {"red</w>", "panda</w>", "blurry</w>"}
    changed = set((emb[0] != emb[1]).any(-1).nonzero().flatten().tolist())
    assert changed == emphasised
    # Unweighted equals the plain encoder output (what diffusers would compute), and means are preserved.
    with torch.no_grad():
        direct = enc(torch.tensor([ids]))[0][0]
    torch.testing.assert_close(emb[1], direct)
    torch.testing.assert_close(emb[0].mean(-1), emb[1].mean(-1), atol=1e-6, rtol=1e-5)
    i_red = names.index("red</w>")
    dev_w, dev_p = emb[0, i_red] - emb[0, i_red].mean(), emb[1, i_red] - emb[1, i_red].mean()
    torch.testing.assert_close(dev_w, dev_p * 1.21, atol=1e-5, rtol=1e-5)


def test_weighted_embeddings_drive_the_tiny_diffusers_pipeline(tmp_path):
    # The project's tiny Stable Diffusion pipeline (built offline): unweighted embeddings equal diffusers' own
    # encode_prompt, and weighted ones are accepted as prompt_embeds / negative_prompt_embeds.
    from genbench.models.generator import load_generator

    pipe = load_generator("tiny", device="cpu", cache_dir=str(tmp_path)).pipe
    ours = weighted_prompt_embeds(pipe.tokenizer, pipe.text_encoder, ["a photo of a cat"])
    with torch.no_grad():
        theirs, _ = pipe.encode_prompt("a photo of a cat", "cpu", 1, False)
    torch.testing.assert_close(ours, theirs)
    embeds = weighted_prompt_embeds(pipe.tokenizer, pipe.text_encoder, ["a photo of a ((cat))", "2, 5, bad shape"])
    assert not torch.equal(embeds[0], ours[0])
    out = pipe(prompt_embeds=embeds[:1], negative_prompt_embeds=embeds[1:], num_inference_steps=1,
               generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape[0] == 1 and out.images.ndim == 4
