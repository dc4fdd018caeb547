"""Image captioners and text-similarity models: the reference filter of textual inversion (the paper's BLIP-2 + BERT).

References (strings, like every model reference in genbench):

- captioner: ``tiny`` (a random-init BLIP-2 built here, offline), a hub id (``Salesforce/blip2-opt-2.7b``, the paper's
  model) or a local directory saved with ``save_pretrained``. Loaded with ``AutoProcessor`` +
  ``AutoModelForImageTextToText``, so BLIP-1 captioning checkpoints work too. Captions are greedy (deterministic).
- text model: ``tiny`` (a random-init BERT with a WordPiece vocabulary written here), a hub id (``bert-base-uncased``)
  or a local directory. Loaded with ``AutoTokenizer`` + ``AutoModel``. The similarity of two texts is the cosine of
  their mean-pooled last hidden states (the mean over real tokens, padding masked out, [CLS]/[SEP] included), which is
  how a plain BERT is commonly used as a sentence encoder.

The tiny models are built from small configs with a fixed seed, saved once under
``<cache_dir>/models/tiny-blip2-<hash>/`` and ``tiny-bert-<hash>/`` (temp dir + atomic rename,
:func:`genbench.models.cache.build_once`) and loaded with ``from_pretrained`` like any checkpoint. Their captions are
word salad and their similarities carry no meaning: they prove the plumbing, not the science. Weights are read from
safetensors only (``use_safetensors=True``): nothing is unpickled.

Torch and transformers are imported lazily, so reference checks (:func:`check_captioner`, :func:`check_text_model`)
stay cheap enough for the driver's preflight.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from genbench.errors import UsageError
from genbench.models.cache import build_once, config_hash, default_cache_dir

log = logging.getLogger(__name__)

DEFAULT_CAPTIONER = "Salesforce/blip2-opt-2.7b"
DEFAULT_TEXT_MODEL = "bert-base-uncased"
ALLOWED_CAPTIONER = ("tiny, a hub id such as Salesforce/blip2-opt-2.7b, or a local directory of an image-to-text model "
                     "saved with save_pretrained (config.json and safetensors weights)")
ALLOWED_TEXT_MODEL = ("tiny, a hub id such as bert-base-uncased, or a local directory of a text encoder saved with "
                      "save_pretrained (config.json and safetensors weights)")
# Hub ids: ``org/name`` or a legacy single name (``bert-base-uncased``); 96 characters is the hub's own limit.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_MAX_HUB_ID = 96

FORMAT_VERSION = 1  # bump when a tiny builder changes what it writes: the cache key changes with it
_SEED = 0
_MARKER = "genbench-tiny.json"

# Captioner specials: OPT uses </s> as both BOS and EOS; BLIP-2 puts one <image> token per Q-Former query first.
_CAP_PAD, _CAP_UNK, _CAP_EOS, _CAP_IMAGE = "<pad>", "<unk>", "</s>", "<image>"
_CAP_SPECIALS = (_CAP_PAD, _CAP_UNK, _CAP_EOS, _CAP_IMAGE)  # ids 0..3
_TINY_IMAGE_SIZE = 32
_TINY_QUERIES = 4
_TINY_BLIP2 = {
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "image_size": _TINY_IMAGE_SIZE, "patch_size": 8},
    "qformer_config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                       "encoder_hidden_size": 32, "max_position_embeddings": 64, "hidden_dropout_prob": 0.0,
                       "attention_probs_dropout_prob": 0.0},
    "text_config": {"model_type": "opt", "hidden_size": 32, "num_hidden_layers": 2, "ffn_dim": 64,
                    "num_attention_heads": 2, "max_position_embeddings": 64, "word_embed_proj_dim": 32,
                    "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 2, "dropout": 0.0, "init_std": 0.5},
    "num_query_tokens": _TINY_QUERIES,
    "image_token_index": 3,
    # With the usual 0.02 initialisation the image prefix barely moves a random OPT: greedy decoding then gives one
    # repeated word (or an empty caption) for every image. Wide weights make tiny captions image-dependent word salad.
    "initializer_range": 0.5,
}

_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
              "max_position_embeddings": 64, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
              "pad_token_id": 0}


# ---------------------------------------------------------------------------------------------------------- references


def resolve_ref(ref: Any, field: str, allowed: str) -> tuple[str, str]:
    """(kind, value) of a captioner or text-model reference: ``("tiny", "")``, ``("dir", abspath)`` or
    ``("hub", id)``. Anything else is a :class:`UsageError` naming ``field``. Pure string and file-listing work."""
    if not isinstance(ref, str) or not ref.strip() or ref != ref.strip() or "\x00" in ref:
        raise UsageError(field, ref, allowed)
    if ref == "tiny":
        return "tiny", ""
    if os.path.isdir(ref):
        if not os.path.isfile(os.path.join(ref, "config.json")):
            raise UsageError(field, ref, "a directory must contain config.json (" + allowed + ")")
        return "dir", os.path.abspath(ref)
    if len(ref) <= _MAX_HUB_ID and _HUB_ID.match(ref) and ".." not in ref and "--" not in ref:
        return "hub", ref
    raise UsageError(field, ref, allowed)


def _check(ref: Any, field: str, allowed: str) -> None:
    kind, value = resolve_ref(ref, field, allowed)
    if kind == "hub" and os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(value, "config.json"), str):
            raise UsageError(field, ref, "'tiny', a local directory, or a hub id already in the local Hugging Face "
                                         "cache (HF_HUB_OFFLINE=1 forbids downloads)")


def check_captioner(ref: Any, field: str = "adapt.filter.captioner") -> None:
    """Everything knowable about a captioner reference without loading it: its form, a directory's config.json, and
    under ``HF_HUB_OFFLINE=1`` that a hub id is in the local Hugging Face cache."""
    _check(ref, field, ALLOWED_CAPTIONER)


def check_text_model(ref: Any, field: str = "adapt.filter.text_model") -> None:
    """As :func:`check_captioner`, for a text-similarity model reference."""
    _check(ref, field, ALLOWED_TEXT_MODEL)


# ---------------------------------------------------------------------------------------------------------- tiny models


def _words() -> list[str]:
    """Lower-case words shared by both tiny vocabularies: the tiny T5's everyday words plus the catalog's class-name
    words (so tiny captions are made of words the tiny BERT knows whole)."""
    from genbench.models.t5_tiny import tiny_vocab

    return sorted({w for w in tiny_vocab() if re.fullmatch(r"[a-z0-9]+", w)})


def _captioner_vocab() -> list[str]:
    return list(_CAP_SPECIALS) + _words()


def _bert_vocab() -> list[str]:
    """WordPiece vocabulary: specials, whole words, then every single character and its ``##`` continuation, so any
    lower-case ASCII text splits into known pieces and nothing but other scripts becomes [UNK]."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    punct = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    pieces = list(_BERT_SPECIALS) + _words()
    seen = set(pieces)
    for tok in chars + punct + [f"##{c}" for c in chars]:
        if tok not in seen:
            pieces.append(tok)
            seen.add(tok)
    return pieces


def _build_captioner(out: Path, vocab: list[str]) -> None:
    import torch
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor,
                              PreTrainedTokenizerFast)

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=_CAP_UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=_CAP_PAD, unk_token=_CAP_UNK,
                                        bos_token=_CAP_EOS, eos_token=_CAP_EOS, model_max_length=64)
    config = Blip2Config(
        vision_config=_TINY_BLIP2["vision_config"],
        qformer_config={**_TINY_BLIP2["qformer_config"], "vocab_size": len(vocab)},
        text_config={**_TINY_BLIP2["text_config"], "vocab_size": len(vocab)},
        num_query_tokens=_TINY_BLIP2["num_query_tokens"],
        image_token_index=_TINY_BLIP2["image_token_index"],
        initializer_range=_TINY_BLIP2["initializer_range"],
    )
    torch.manual_seed(_SEED)  # fixed weights: the same tiny captioner on every machine
    model = Blip2ForConditionalGeneration(config).eval()
    processor = Blip2Processor(
        image_processor=BlipImageProcessor(size={"height": _TINY_IMAGE_SIZE, "width": _TINY_IMAGE_SIZE}),
        tokenizer=tokenizer, num_query_tokens=_TINY_QUERIES,
    )
    # The processor adds <image> only when missing; it is id 3 already, which the model's config points at.
    if tokenizer.convert_tokens_to_ids(_CAP_IMAGE) != _TINY_BLIP2["image_token_index"]:
        raise RuntimeError("tiny captioner: <image> token id does not match image_token_index")
    model.save_pretrained(str(out), safe_serialization=True)
    processor.save_pretrained(str(out))
    (out / _MARKER).write_text(json.dumps({"format": FORMAT_VERSION, "seed": _SEED, "kind": "blip2"}),
                               encoding="utf-8")


def _build_text_model(out: Path, vocab: list[str]) -> None:
    import torch
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, BertTokenizer

    # The tokenizer is built from the vocab file written here, as a BERT checkpoint ships one.
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=WordPiece.read_file(str(vocab_file)), do_lower_case=True,
                              model_max_length=_TINY_BERT["max_position_embeddings"])
    torch.manual_seed(_SEED)
    # With its pooler, as BERT checkpoints have one: AutoModel builds it and would report its weights missing.
    model = BertModel(BertConfig(vocab_size=len(vocab), **_TINY_BERT)).eval()
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    (out / _MARKER).write_text(json.dumps({"format": FORMAT_VERSION, "seed": _SEED, "kind": "bert"}),
                               encoding="utf-8")


def tiny_captioner_dir(cache_dir: str | None = None) -> Path:
    """The saved tiny BLIP-2 directory (built on first use); load it with ``from_pretrained``."""
    vocab = _captioner_vocab()
    key = config_hash({"config": _TINY_BLIP2, "vocab": vocab, "seed": _SEED, "format": FORMAT_VERSION})
    target = Path(cache_dir or default_cache_dir()) / "models" / f"tiny-blip2-{key}"
    return build_once(target, lambda tmp: _build_captioner(tmp, vocab), marker=_MARKER)


def tiny_text_model_dir(cache_dir: str | None = None) -> Path:
    """The saved tiny BERT directory (built on first use); load it with ``from_pretrained``."""
    vocab = _bert_vocab()
    key = config_hash({"config": _TINY_BERT, "vocab": vocab, "seed": _SEED, "format": FORMAT_VERSION})
    target = Path(cache_dir or default_cache_dir()) / "models" / f"tiny-bert-{key}"
    return build_once(target, lambda tmp: _build_text_model(tmp, vocab), marker=_MARKER)


# ---------------------------------------------------------------------------------------------------------- loaded models


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Captioner:
    """A loaded image-to-text model and its processor. :meth:`caption` is greedy decoding without a prompt, so the
    same image gives the same caption in every process."""

    def __init__(self, ref: str, model: Any, processor: Any, device: Any, max_new_tokens: int = 30,
                 batch_size: int = 16):
        self.ref, self.model, self.processor, self.device = ref, model, processor, device
        self.max_new_tokens, self.batch_size = int(max_new_tokens), int(batch_size)
        self.dtype = next(model.parameters()).dtype

    def caption(self, images: list) -> list[str]:
        """One caption per PIL image, in order; whitespace collapsed, special tokens removed (may be empty)."""
        import torch

        out: list[str] = []
        for start in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                ids = self.model.generate(pixel_values=pixels.to(self.device, self.dtype), do_sample=False,
                                          num_beams=1, max_new_tokens=self.max_new_tokens)
            out.extend(" ".join(t.split()) for t in self.processor.batch_decode(ids, skip_special_tokens=True))
        return out

    def __repr__(self) -> str:
        return f"Captioner(ref={self.ref!r}, device={self.device}, dtype={self.dtype})"


class TextSimilarity:
    """A loaded text encoder; a text's embedding is the L2-normalised mean of its last hidden states over real tokens
    (padding masked out), and the similarity of two texts is the cosine of their embeddings, in [-1, 1]."""

    def __init__(self, ref: str, model: Any, tokenizer: Any, device: Any, batch_size: int = 64):
        self.ref, self.model, self.tokenizer, self.device = ref, model, tokenizer, device
        self.batch_size = int(batch_size)
        limit = getattr(model.config, "max_position_embeddings", 512)
        # Some tokenizers report a huge model_max_length (no limit known): the position table is the real limit.
        self.max_length = int(min(limit, getattr(tokenizer, "model_max_length", limit) or limit))

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 (N, hidden), each row L2-normalised (a zero row stays zero)."""
        import torch

        rows = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[start : start + self.batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            rows.append(mean.cpu().numpy())
        if not rows:
            return np.zeros((0, int(self.model.config.hidden_size)), np.float32)
        emb = np.concatenate(rows).astype(np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.where(norms > 0, norms, 1.0)

    def similarity(self, texts: list[str], reference: str) -> np.ndarray:
        """float64 (N,): cosine similarity of each text to ``reference``, clipped to [-1, 1] (rounding can overshoot)."""
        if not texts:
            return np.zeros(0, np.float64)
        emb = self.embed(list(texts) + [reference]).astype(np.float64)
        return np.clip(emb[:-1] @ emb[-1], -1.0, 1.0)

    def __repr__(self) -> str:
        return f"TextSimilarity(ref={self.ref!r}, device={self.device})"


def _path_for(ref: str, field: str, allowed: str, cache_dir: str | None, tiny_dir) -> str:
    kind, value = resolve_ref(ref, field, allowed)
    return str(tiny_dir(cache_dir)) if kind == "tiny" else value


def load_captioner(ref: str = DEFAULT_CAPTIONER, device: str | None = None, cache_dir: str | None = None,
                   max_new_tokens: int = 30, batch_size: int = 16,
                   field: str = "adapt.filter.captioner") -> Captioner:
    """Load a captioner by reference (see the module docstring). On a GPU the model runs in float16 (BLIP-2 OPT-2.7b
    is 15 GB in float32); on the CPU in float32. A reference that cannot be loaded is a :class:`UsageError`."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from genbench.models.device import resolve_device

    path = _path_for(ref, field, ALLOWED_CAPTIONER, cache_dir, tiny_captioner_dir)
    dev = resolve_device(device, field="device")
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    try:
        processor = AutoProcessor.from_pretrained(path)
        model = AutoModelForImageTextToText.from_pretrained(path, use_safetensors=True, dtype=dtype)
    except (OSError, ValueError) as exc:  # offline and not cached, no such repo, no safetensors, not image-to-text
        raise UsageError(field, ref, ALLOWED_CAPTIONER + f" (loading failed: {_one_line(exc)})") from exc
    model = model.to(dev).eval()
    log.info("loaded captioner %s from %s on %s (%s)", ref, path, dev, dtype)
    return Captioner(ref, model, processor, dev, max_new_tokens=max_new_tokens, batch_size=batch_size)


def load_text_model(ref: str = DEFAULT_TEXT_MODEL, device: str | None = None, cache_dir: str | None = None,
                    batch_size: int = 64, field: str = "adapt.filter.text_model") -> TextSimilarity:
    """Load a text-similarity model by reference (see the module docstring); float32 everywhere (it is small, and
    mean pooling in float16 loses the digits a 0.8 threshold looks at)."""
    from transformers import AutoModel, AutoTokenizer

    from genbench.models.device import resolve_device

    path = _path_for(ref, field, ALLOWED_TEXT_MODEL, cache_dir, tiny_text_model_dir)
    dev = resolve_device(device, field="device")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise UsageError(field, ref, ALLOWED_TEXT_MODEL + f" (loading failed: {_one_line(exc)})") from exc
    model = model.to(dev).eval()
    log.info("loaded text model %s from %s on %s", ref, path, dev)
    return TextSimilarity(ref, model, tokenizer, dev, batch_size=batch_size)
