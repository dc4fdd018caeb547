"""Real prompt weighting for the community's emphasis syntax, e.g. ``"((cat)), sharp focus"`` (the RD strategy).

Syntax (as the Stable Diffusion community writes it):

- ``(text)`` multiplies the weight of ``text`` by 1.1 per level, ``((text))`` by 1.21, ...
- ``[text]`` divides it by 1.1 per level.
- ``(text:1.3)`` sets an explicit multiplier of 1.3 (it still multiplies with enclosing brackets).
- ``\\(``, ``\\)``, ``\\[``, ``\\]``, ``\\\\`` are literal characters. An unmatched closing bracket is literal text; a
  bracket still open at the end applies to the rest of the text.

Embedding scheme (:func:`weighted_prompt_embeds`): the *plain* text (brackets removed) is tokenised once, exactly as an
unweighted prompt would be, and each token gets the weight of the segment its first character lies in. The text encoder
runs on the plain tokens; then each token's hidden state ``h`` (a vector of size ``hidden``) becomes
``mean(h) + w * (h - mean(h))``: its deviation from its own mean is scaled by ``w`` while its mean is kept. Hence

- each token's mean, and so the mean of the whole ``[B, 77, hidden]`` tensor, is preserved exactly;
- tokens of weight 1 (including BOS/EOS/padding) are bit-identical to the unweighted embedding, so weighting changes
  nothing but the emphasised tokens, independent of batch composition and padding.

(The widespread alternative multiplies all of ``h`` by ``w`` and then rescales the whole tensor to its old mean,
which also changes every unweighted token; we avoid that so an emphasis cannot leak into the rest of the prompt.)
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

EMPHASIS = 1.1  # one bracket level, as the community's syntax defines it

_TOKEN = re.compile(
    r"""
    \\[\\()\[\]]                      # escaped literal
    | \(                              # open emphasis
    | \[                              # open de-emphasis
    | :\s*(?P<num>[+-]?(?:\d+\.?\d*|\.\d+))\s*\)   # explicit weight, closes a '('
    | \)
    | \]
    | [^\\()\[\]:]+                   # plain run
    | .                               # anything else (a lone ':' or '\') is literal
    """,
    re.VERBOSE | re.DOTALL,
)


def escape_weighting(text: str) -> str:
    """``text`` with its bracket and backslash characters escaped, so :func:`parse_weighted` keeps them literally."""
    return re.sub(r"([\\()\[\]])", r"\\\1", text)


def parse_weighted(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into (plain text, weight) segments; adjacent segments of equal weight are merged.

    >>> parse_weighted("a ((cat)) on [grass]")
    [('a ', 1.0), ('cat', 1.2100000000000002), (' on ', 1.0), ('grass', 0.9090909090909091)]
    """
    pieces: list[list[Any]] = []  # [text, weight] in order of appearance
    stack: list[tuple[str, int]] = []  # (bracket kind, index into pieces where it opened)

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _TOKEN.finditer(text):
        tok = match.group(0)
        if tok.startswith("\\") and len(tok) == 2:
            pieces.append([tok[1], 1.0])
        elif tok == "(" or tok == "[":
            stack.append((tok, len(pieces)))
        elif match.group("num") is not None:
            if stack and stack[-1][0] == "(":
                scale(stack.pop()[1], float(match.group("num")))
            else:  # no '(' to close: the whole thing is text
                pieces.append([tok, 1.0])
        elif tok == ")" or tok == "]":
            opener = "(" if tok == ")" else "["
            if stack and stack[-1][0] == opener:
                scale(stack.pop()[1], EMPHASIS if tok == ")" else 1.0 / EMPHASIS)
            else:
                pieces.append([tok, 1.0])
        else:
            pieces.append([tok, 1.0])
    for kind, start in reversed(stack):  # still open at the end: applies to the rest
        scale(start, EMPHASIS if kind == "(" else 1.0 / EMPHASIS)

    merged: list[tuple[str, float]] = []
    for piece_text, weight in pieces:
        if not piece_text:
            continue
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + piece_text, weight)
        else:
            merged.append((piece_text, weight))
    return merged or [("", 1.0)]


def plain_text(text: str) -> str:
    """``text`` with the weighting syntax removed: what the tokenizer actually sees."""
    return "".join(seg for seg, _ in parse_weighted(text))


def token_weights(tokenizer: Any, text: str, max_length: int | None = None) -> tuple[list[int], list[float]]:
    """Token ids of the plain text (padded/truncated like diffusers does) and one weight per token.

    Needs a fast tokenizer (offset mappings). Special and padding tokens get weight 1.
    """
    segments = parse_weighted(text)
    plain = "".join(seg for seg, _ in segments)
    # Character -> weight lookup: the segment boundaries as cumulative offsets.
    bounds: list[tuple[int, float]] = []
    pos = 0
    for seg, weight in segments:
        pos += len(seg)
        bounds.append((pos, weight))
    max_length = max_length or tokenizer.model_max_length
    enc = tokenizer(
        plain,
        padding="max_length",
        max_length=max_length,
        truncation=True,
        return_offsets_mapping=True,
    )
    weights: list[float] = []
    for start, end in enc["offset_mapping"]:
        if end <= start:  # special / padding token
            weights.append(1.0)
            continue
        weights.append(next((w for b, w in bounds if start < b), 1.0))
    return list(enc["input_ids"]), weights


def weighted_prompt_embeds(
    tokenizer: Any, text_encoder: Any, texts: list[str], device: "str | torch.device | None" = None
) -> "torch.Tensor":
    """``[B, max_length (77), hidden]`` prompt embeddings with per-token weights applied (scheme: module docstring).

    Usable as diffusers' ``prompt_embeds`` / ``negative_prompt_embeds`` (encode the negatives with the same call).
    Prompts longer than the tokenizer's window are truncated, as diffusers does for unweighted prompts.
    """
    import torch  # here, so that parsing (and genbench.prompts) does not pull in torch

    if isinstance(texts, str):
        texts = [texts]
    device = torch.device(device) if device is not None else next(text_encoder.parameters()).device
    ids, weights = zip(*(token_weights(tokenizer, t) for t in texts))
    input_ids = torch.tensor(ids, dtype=torch.long, device=device)
    kwargs = {}
    if getattr(text_encoder.config, "use_attention_mask", False):
        # Only SD variants whose encoder was trained with a mask use one (as diffusers' encode_prompt decides).
        pad = tokenizer.pad_token_id
        kwargs["attention_mask"] = (input_ids != pad).long() if pad is not None else torch.ones_like(input_ids)
    with torch.no_grad():
        hidden = text_encoder(input_ids, **kwargs)[0]
    w = torch.tensor(weights, dtype=torch.float32, device=device).unsqueeze(-1)
    h = hidden.float()
    mean = h.mean(dim=-1, keepdim=True)
    out = torch.where(w == 1.0, h, mean + w * (h - mean))
    n_weighted = int((w != 1.0).sum())
    log.debug("weighted %d of %d tokens in %d prompt(s)", n_weighted, w.numel(), len(texts))
    return out.to(hidden.dtype)
