"""T5 and Gemma tokenizers built offline with the ``tokenizers`` library, for the random-weight T5 (SD3, FLUX, PixArt)
and Gemma 2 (Sana) text encoders of :mod:`genbench.models.build_families`.

The published vocabularies are SentencePiece files that cannot be fetched offline. These tokenizers have the same
interface and special tokens (T5: ``<pad>``=0, ``</s>``=1, ``<unk>``=2; Gemma: ``<pad>``, ``<eos>``, ``<bos>``,
``<unk>``, byte fallback) and a small vocabulary: single characters plus whole words of a fixed list, so English text
splits into about as many tokens as with the real ones. The pipelines pad T5 and Gemma inputs to a fixed length
(``max_sequence_length``), so their encoders' cost does not depend on the vocabulary; Sana prepends its long
"complex human instruction", whose words are in the list, so its length in tokens is close to the real one.
"""

from __future__ import annotations

import inspect
import re
import string
from pathlib import Path

# Bump when what these functions write changes: built models' cache keys include it.
TOKENIZER_VERSION = 1
_WORD = re.compile(r"[A-Za-z]+")
_BASE = (
    "a an the of in on at with and by near under over from for to is are sits stands runs flies lies grows photo "
    "picture image close view small large old young red green blue white black brown yellow bright dark field street "
    "water sky tree grass table room road wall garden forest beach city house snow light man woman child people dog "
    "cat bird car flower plant animal object scene background sharp focus highly detailed hires bad shape misfigured "
    "type kind style painting drawing sketch rendering art"
).split()


def _words() -> list[str]:
    """The word list: everyday prompt words and the words of Sana's default complex human instruction."""
    words = set(_BASE)
    try:
        from diffusers import SanaPipeline

        chi = inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default
        words |= {w for line in chi for w in _WORD.findall(line)}
    except (ImportError, KeyError):  # another diffusers: the list is only shorter
        pass
    return sorted(words | {w.lower() for w in words})


_CHARS = [c for c in string.printable if not c.isspace()]


def t5_tokenizer(model_max_length: int):
    """A ``T5TokenizerFast`` (a Unigram model: characters and whole words, no sentinel ``<extra_id_*>`` tokens)."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    pieces += [(c, -6.0) for c in _CHARS] + [("\u2581" + c, -6.0) for c in _CHARS]
    pieces += [("\u2581" + w, -2.0) for w in _words()]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def gemma_tokenizer(model_max_length: int):
    """A ``GemmaTokenizerFast`` (byte-fallback BPE: bytes, characters, and merges that join each listed word)."""
    from transformers import GemmaTokenizerFast

    vocab: dict[str, int] = {}
    for tok in ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581"]:
        vocab.setdefault(tok, len(vocab))
    for c in _CHARS:
        vocab.setdefault(c, len(vocab))
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in _words():
        # Only "▁word" (after a space): every merge then extends a symbol that starts with "▁" by one character, so
        # the merges of two words never compete and each listed word becomes one token.
        left = "\u2581"
        for ch in word:
            if (left, ch) not in seen:
                seen.add((left, ch))
                merges.append((left, ch))
            left += ch
            vocab.setdefault(left, len(vocab))
    return GemmaTokenizerFast(vocab=vocab, merges=merges, model_max_length=model_max_length, add_bos_token=True)


def vocab_size(tokenizer) -> int:
    """Ids the tokenizer can produce (its vocabulary and added tokens): a text encoder needs at least this many rows."""
    return len(tokenizer)


def save(tokenizer, out: Path) -> None:
    tokenizer.save_pretrained(str(out))
