"""CLIP BPE tokenizer files (vocab.json + merges.txt) derived from the vocabulary open_clip ships in its package.

This reproduces the vocabulary construction of open_clip's ``SimpleTokenizer`` (the original OpenAI CLIP one), so a
Hugging Face ``CLIPTokenizer`` built from these files gives the same ids as open_clip, and nothing is fetched.

:func:`reduced_clip_vocab` keeps only the merges a given text corpus uses (the toy models' vocabulary): words of the
corpus split into the same tokens as with the full vocabulary, any other text into smaller pieces down to bytes, so no
text is ever out of vocabulary, and the token-embedding table stays a few hundred rows instead of 49,408.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

# CLIP uses the first 49152 - 256 - 2 merges of the file (after its header line): 256 byte tokens, 256 byte+'</w>'
# tokens, the merges, and 2 special tokens give the 49408-entry vocabulary.
_N_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bundled_bpe_path() -> str:
    from open_clip.tokenizer import default_bpe

    return default_bpe()


def _byte_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable-unicode map of GPT-2/CLIP byte-level BPE (printable bytes map to themselves)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, codes)}


def clip_bpe_vocab(bpe_path: str | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(token -> id, merges) exactly as CLIP's tokenizer orders them."""
    lines = gzip.open(bpe_path or _bundled_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _N_MERGES + 1]]
    base = list(_byte_to_unicode().values())
    tokens = base + [t + "</w>" for t in base] + ["".join(m) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges  # type: ignore[return-value]


# CLIP's pre-tokenisation: contractions, runs of letters, single digits, runs of other non-space characters.
_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _merges_used(word: str, ranks: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
    """The merges byte-level BPE applies to ``word`` (already mapped to its byte characters), in order."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    used = []
    while len(parts) > 1:
        best = min(zip(parts, parts[1:]), key=lambda pair: ranks.get(pair, len(ranks)))
        if best not in ranks:
            break
        used.append(best)
        merged, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return used


def reduced_clip_vocab(texts: list[str], bpe_path: str | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(token -> id, merges) with the 512 byte tokens, the merges ``texts`` use (in CLIP's order) and BOS/EOS last,
    so EOS has the highest id as open_clip's text pooling expects."""
    import regex

    _, merges = clip_bpe_vocab(bpe_path)
    ranks = {m: i for i, m in enumerate(merges)}
    to_char = _byte_to_unicode()
    needed: set[tuple[str, str]] = set()
    for text in texts:
        for word in regex.findall(_WORDS, " ".join(text.lower().split()), regex.IGNORECASE):
            needed.update(_merges_used("".join(to_char[b] for b in word.encode("utf-8")), ranks))
    kept = [m for m in merges if m in needed]
    base = list(to_char.values())
    tokens = base + [t + "</w>" for t in base] + ["".join(m) for m in kept] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, kept


def write_clip_tokenizer_files(out_dir: str | Path, bpe_path: str | None = None,
                               texts: list[str] | None = None) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` (with its ``#version`` header) into ``out_dir``: the full CLIP
    vocabulary, or with ``texts`` the reduced one of :func:`reduced_clip_vocab`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = reduced_clip_vocab(texts, bpe_path) if texts is not None else clip_bpe_vocab(bpe_path)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8"
    )
    return out


def load_clip_tokenizer(bpe_path: str | None = None, model_max_length: int = 77):
    """A ``transformers.CLIPTokenizer`` built in memory from the bundled vocabulary (no files read from the hub)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe_vocab(bpe_path)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
