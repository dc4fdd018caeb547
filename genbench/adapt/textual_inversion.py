"""Textual inversion (the paper's knowledge injection): one new token per class, learned from reference images.

The token (``<|dataset class|>``) is added to the pipeline's tokenizer, its embedding initialised from the class
name's, and only that embedding row is trained with the denoising loss on the references under prompts built from
the dataset's templates; the UNet, VAE and every other token stay as they were. The result is one vector, saved in
the format ``pipe.load_textual_inversion`` reads ({token: vector} in safetensors).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from genbench.adapt.diffusion import denoising_loss, latents, noise_schedule
from genbench.adapt.spec import class_token  # noqa: F401 - the token's name lives with the config
from genbench.errors import UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TISettings:
    """The paper trains 1,000 steps per class; lr and batch follow diffusers' textual-inversion example, scaled."""

    steps: int = 1000
    lr: float = 5e-3
    batch_size: int = 4

    def __post_init__(self) -> None:
        if not 1 <= int(self.steps) <= 100_000:
            raise UsageError("adapt.steps", self.steps, "an integer from 1 to 100000")
        if not 0.0 < float(self.lr) <= 1.0:
            raise UsageError("adapt.lr", self.lr, "a learning rate in (0, 1]")
        if not 1 <= int(self.batch_size) <= 1024:
            raise UsageError("adapt.batch_size", self.batch_size, "an integer from 1 to 1024")


def _add_token(pipe: Any, token: str, init_text: str) -> int:
    """Add ``token`` (if new) with the mean embedding of ``init_text``'s tokens; returns its id."""
    tok, enc = pipe.tokenizer, pipe.text_encoder
    if token not in tok.get_vocab():
        tok.add_tokens([token])
        enc.resize_token_embeddings(len(tok), mean_resizing=False)  # the new row is set just below
    token_id = tok.convert_tokens_to_ids(token)
    init_ids = tok(init_text, add_special_tokens=False).input_ids or [tok.eos_token_id]
    weight = enc.get_input_embeddings().weight
    with torch.no_grad():
        weight[token_id] = weight[init_ids].mean(0)
    return int(token_id)


def train_token(pipe: Any, images: list[Image.Image], token: str, init_text: str, templates: tuple[str, ...],
                settings: TISettings, seed: int) -> torch.Tensor:
    """Learn ``token``'s embedding from ``images``; returns it (float32, CPU). The pipeline keeps the token."""
    token_id = _add_token(pipe, token, init_text)
    x0_all = latents(pipe, images)
    schedule = noise_schedule(pipe)
    weight = pipe.text_encoder.get_input_embeddings().weight
    frozen = list(pipe.unet.parameters()) + list(pipe.text_encoder.parameters())
    was = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    weight.requires_grad_(True)
    others = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
    others[token_id] = False
    opt = torch.optim.AdamW([weight], lr=float(settings.lr), weight_decay=0.0)
    gen = torch.Generator().manual_seed(int(seed))
    try:
        for _ in range(int(settings.steps)):
            pick = torch.randint(len(images), (int(settings.batch_size),), generator=gen)
            forms = torch.randint(len(templates), (int(settings.batch_size),), generator=gen)
            loss = denoising_loss(pipe, schedule, x0_all[pick], [templates[int(f)].format(token) for f in forms], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            weight.grad[others] = 0  # only the new token learns; Adam leaves rows with zero gradient unchanged
            opt.step()
    finally:
        for p, flag in zip(frozen, was):
            p.requires_grad_(flag)
    log.debug("textual inversion %s: final loss %.4f", token, loss.item())
    return weight[token_id].detach().float().cpu().clone()
