"""The toy models' training code (genbench.models.toy): reduced tokenizer, one training per recipe under a lock,
repeatable weights, safetensors only, and the shipped weights matching the shipped recipes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from genbench.models.cache import load_config

REPO = Path(__file__).resolve().parents[1]


def _short(name: str) -> dict:
    """The shipped recipe with a few steps: the same code path, seconds instead of minutes."""
    recipe = load_config(name)
    recipe["train"].update(steps=3, batch_size=16, warmup=1)
    if name == "toy-sd":
        recipe["train"].update(vae_steps=2)
    return recipe


def test_reduced_vocabulary_tokenises_the_corpus_like_clip_and_anything_else_into_pieces(tmp_path):
    from transformers import CLIPTokenizer

    from genbench.models.bpe import reduced_clip_vocab, write_clip_tokenizer_files

    corpus = ['a photo of the number: "7".', "a handwritten digit 3.", "sharp focus, highly detailed, hires"]
    vocab, merges = reduced_clip_vocab(corpus)
    assert len(vocab) < 700 and max(vocab.values()) == vocab["<|endoftext|>"]  # EOS last: open_clip pools at argmax
    small = CLIPTokenizer.from_pretrained(str(write_clip_tokenizer_files(tmp_path / "small", texts=corpus)))
    full = CLIPTokenizer.from_pretrained(str(write_clip_tokenizer_files(tmp_path / "full")))
    for text in corpus:
        assert small.convert_ids_to_tokens(small(text).input_ids) == full.convert_ids_to_tokens(full(text).input_ids)
    pieces = small.convert_ids_to_tokens(small("a zebra").input_ids)[1:-1]
    assert pieces[0] == "a</w>" and "".join(pieces[1:]) == "zebra</w>" and len(pieces) > 2
    ids = small("zebra ü 東京").input_ids  # byte-level: nothing is out of vocabulary (CLIP's unknown token is EOS)
    assert ids[-1] == small.eos_token_id and small.eos_token_id not in ids[1:-1] and len(ids) > 6


def test_shipped_weights_are_the_shipped_recipes_and_small():
    from genbench.models.cache import file_digest
    from genbench.models.toy.store import SHIPPED_DIR, TOY_MODELS, read_record, shipped_dir

    total = 0
    for name in TOY_MODELS:
        where = shipped_dir(name)
        assert where is not None, f"{name}: shipped weights were trained from another recipe; run genbench toy train --ship"
        record = read_record(where)
        files = [p for p in where.rglob("*") if p.is_file()]
        total += sum(p.stat().st_size for p in files)
        weights = sorted(str(p.relative_to(where)) for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".pkl",
                                                                                ".ckpt", ".pth"))
        assert weights == sorted(record["weights_sha256"]) and all(w.endswith(".safetensors") for w in weights)
        assert all(file_digest(where / w) == record["weights_sha256"][w] for w in weights)
        assert record["data"] == {**record["data"], "dataset": "digits", "split": "train"}
    assert total < 5 * 2**20
    assert SHIPPED_DIR.is_dir()


_TRAIN = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from genbench.models.toy.store import toy_model_dir
print(toy_model_dir(sys.argv[1], sys.argv[2], recipe=json.loads(sys.argv[3])))
"""


def test_concurrent_first_uses_train_once_then_retraining_gives_the_same_bytes(tmp_path):
    """Two processes asking for an untrained toy CLIP at once: one trains, the other waits and loads its copy.
    Training again from the same recipe writes byte-identical weights (fixed threads, seeds, deterministic kernels)."""
    from genbench.models.toy.store import read_record, toy_model_dir

    recipe = _short("toy-clip")
    cmd = [sys.executable, "-c", _TRAIN, "toy-clip", str(tmp_path), json.dumps(recipe)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert sum("training toy model toy-clip" in o[0] for o in outs) == 1
    dirs = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(dirs) == 1
    first = read_record(dirs.pop())
    # No temporary directory left behind: only the model and its lock file.
    assert sorted(p.is_dir() for p in (tmp_path / "models").iterdir()) == [False, True]
    again = read_record(toy_model_dir("toy-clip", str(tmp_path), retrain=True, recipe=recipe))
    assert again["weights_sha256"] == first["weights_sha256"]
    assert again["recipe_key"] == first["recipe_key"] != read_record(toy_model_dir("toy-clip"))["recipe_key"]


def test_a_short_toy_sd_training_loads_with_from_pretrained_and_generates(tmp_path):
    from genbench.models.generator import load_generator
    from genbench.models.toy.store import read_record, toy_model_dir

    where = toy_model_dir("toy-sd", str(tmp_path), recipe=_short("toy-sd"))
    record = read_record(where)
    assert record["steps"] == 3 and record["data"]["images"] == 1257
    assert sorted(record["weights_sha256"]) == ["text_encoder/model.safetensors",
                                                "unet/diffusion_pytorch_model.safetensors",
                                                "vae/diffusion_pytorch_model.safetensors"]
    gen = load_generator(str(where))
    images = gen.generate(["a handwritten digit 3."], [None], [0], steps=2, guidance_scale=3.0)
    assert images[0].size == (8, 8) and gen.default_size == 8


def test_digits_rot_is_the_same_split_turned_a_quarter():
    from genbench.catalog import get_dataset
    from genbench.catalog.loaders import load_split

    for split in ("train", "test"):
        upright = load_split(get_dataset("digits"), split)
        turned = load_split(get_dataset("digits_rot"), split)
        assert np.array_equal(upright.labels, turned.labels) and upright.fingerprint != turned.fingerprint
        for i in (0, len(upright) - 1):
            assert np.array_equal(turned.pixels(i), np.rot90(upright.pixels(i)))
            assert np.array_equal(np.asarray(turned.image(i))[..., 0], np.rot90(upright.pixels(i)))


def test_toy_references_resolve_to_trained_models_and_name_their_recipe():
    """Sidecars and collections made by one toy recipe are never taken for another's: the CLIP's sidecar directory
    and a generated collection's identity carry the recipe key."""
    from genbench.config import parse_config
    from genbench.models import refs
    from genbench.models.toy.store import recipe_key
    from genbench.sources import registry
    from genbench.sources.base import CheckContext

    assert refs.resolve_generator("toy") == ("toy", "toy-sd")
    refs.check_clip("toy")
    assert refs.clip_slug("toy") == "toy-" + recipe_key("toy-clip")[:8] and refs.generator_slug("toy") == "toy"
    assert not refs.clip_untrained("toy") and not refs.generator_untrained("toy")
    assert "toy-sd" not in refs.shipped_pipeline_configs()
    cfg = parse_config({"name": "t", "datasets": ["digits"], "clip": "toy",
                            "sources": [{"source": "generated", "generator": "toy", "strategies": ["dt"], "shots": 4}]})
    spec = next(iter(cfg.sources[0].spec.expand("digits")))
    resolved = registry.load(cfg.sources[0].ref).resolve(spec, CheckContext("toy", refs.clip_slug("toy"), None, None, {}))
    assert resolved.identity_options()["generator_recipe"] == recipe_key("toy-sd")
    assert resolved.variant(0) == spec.variant(0)  # the name stays readable; a changed recipe is refused by identity
