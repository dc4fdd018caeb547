"""A tiny offline T5 word-to-sentence model (reference ``"tiny"`` of the CE prompt strategy).

It proves the CE plumbing (tokenise category words -> seq2seq sampling -> sentence) without downloading anything:
a random-init ``T5ForConditionalGeneration`` from a small config (fixed seed) and a word-level tokenizer built with
the ``tokenizers`` library from a fixed word list plus the catalog's class names. Both are saved once with
``save_pretrained`` to ``<cache_dir>/models/tiny-t5-<hash>/`` (temp dir + atomic rename) and loaded with
``from_pretrained(dir)``, the same path a real checkpoint takes. Its sentences are word salad: it is not a language model.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from genbench.models.cache import build_once, config_hash, default_cache_dir

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"  # T5's ids 0, 1, 2

# Everyday words so that sampled "sentences" have a sentence-like shape; class names of the catalog are added.
_BASE_WORDS = (
    "a an the of in on at with and by near under over from for to is are sits stands runs flies lies grows "
    "photo picture image close view small large old young red green blue white black brown yellow bright dark "
    "field street water sky tree grass table room road wall garden forest beach city house snow light "
    "man woman child people dog cat bird car flower plant animal object scene background"
).split()

_CONFIG = {
    "d_model": 32,
    "d_ff": 64,
    "d_kv": 16,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_heads": 2,
    "relative_attention_num_buckets": 8,
    "dropout_rate": 0.0,
    "feed_forward_proj": "relu",
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}
_SEED = 0


def _catalog_words() -> list[str]:
    """Lower-case words of every catalog class name; an entry that does not load is skipped (logged), not fatal."""
    from genbench.catalog import dataset_names, get_dataset

    words: set[str] = set()
    for name in dataset_names():
        try:
            spec = get_dataset(name)
        except Exception as exc:  # a catalog entry being edited must not break CE tests of other entries
            log.warning("tiny T5 vocabulary: skipping catalog entry %s (%s)", name, exc)
            continue
        for cls in spec.classes:
            words.update(_split_words(cls))
    return sorted(words)


def _split_words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())


def tiny_vocab() -> list[str]:
    """The tokenizer's vocabulary in id order (specials first, as T5 numbers them)."""
    words = sorted(set(_BASE_WORDS) | set(_catalog_words()) | set(".,"))
    return [PAD, EOS, UNK] + [w for w in words if w not in (PAD, EOS, UNK)]


def _build_tokenizer(vocab: list[str]):
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # splits words and punctuation, like _split_words
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)


def _build(out: Path, vocab: list[str], config: dict) -> None:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(_SEED)  # fixed weights: the same tiny model on every machine
    model = T5ForConditionalGeneration(T5Config(vocab_size=len(vocab), **config)).eval()
    model.save_pretrained(out)  # safetensors
    _build_tokenizer(vocab).save_pretrained(out)
    (out / "genbench-tiny.json").write_text(json.dumps({"format": FORMAT_VERSION, "seed": _SEED}), encoding="utf-8")


def tiny_t5_dir(cache_dir: str | None = None) -> Path:
    """The saved tiny T5 directory (built on first use); load it with ``from_pretrained``."""
    vocab = tiny_vocab()
    key = config_hash({"config": _CONFIG, "vocab": vocab, "seed": _SEED, "format": FORMAT_VERSION})
    target = Path(cache_dir or default_cache_dir()) / "models" / f"tiny-t5-{key}"
    return build_once(target, lambda tmp: _build(tmp, vocab, _CONFIG), marker="genbench-tiny.json")
