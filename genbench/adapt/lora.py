"""DataDream-style LoRA: low-rank adapters on the UNet's attention and the text encoder, learned from the few real
shots (one adapter per class or one per dataset), saved in the format ``pipe.load_lora_weights`` reads, so a worker
switches adapters per class without reloading the base pipeline."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from genbench.adapt.diffusion import denoising_loss, latents, noise_schedule
from genbench.errors import UsageError

log = logging.getLogger(__name__)

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


@dataclass(frozen=True)
class LoRASettings:
    """DataDream's published defaults: rank 16, alpha 32, lr 1e-4; UNet and text encoder."""

    rank: int = 16
    alpha: float = 32.0
    lr: float = 1e-4
    steps: int = 200
    batch_size: int = 8
    text_encoder: bool = True

    def __post_init__(self) -> None:
        if not 1 <= int(self.rank) <= 1024:
            raise UsageError("adapt.rank", self.rank, "an integer from 1 to 1024")
        if not 0.0 < float(self.alpha) <= 4096:
            raise UsageError("adapt.alpha", self.alpha, "a number in (0, 4096]")
        if not 0.0 < float(self.lr) <= 1.0:
            raise UsageError("adapt.lr", self.lr, "a learning rate in (0, 1]")
        if not 1 <= int(self.steps) <= 100_000:
            raise UsageError("adapt.steps", self.steps, "an integer from 1 to 100000")
        if not 1 <= int(self.batch_size) <= 1024:
            raise UsageError("adapt.batch_size", self.batch_size, "an integer from 1 to 1024")


def train_lora(pipe: Any, images: list[Image.Image], captions: list[list[str]], settings: LoRASettings, seed: int,
               out_dir: str | Path, adapter_name: str = "genbench") -> Path:
    """Train LoRA adapters on ``images`` (image i under one of ``captions[i]`` per step) and save them into
    ``out_dir`` (``pytorch_lora_weights.safetensors``); the pipeline is left without them. Returns the file."""
    if len(captions) != len(images) or not all(captions):
        raise UsageError("captions", f"{len(captions)} lists", f"one non-empty list per image ({len(images)})")
    with torch.random.fork_rng(devices=[]):  # peft initialises adapters from the global RNG: seed it, then restore it
        torch.manual_seed(int(seed))
        return _train(pipe, images, captions, settings, seed, Path(out_dir), adapter_name)


def _train(pipe: Any, images: list[Image.Image], captions: list[list[str]], settings: LoRASettings, seed: int,
           out: Path, adapter_name: str) -> Path:
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    x0_all = latents(pipe, images)
    schedule = noise_schedule(pipe)
    config = dict(r=int(settings.rank), lora_alpha=float(settings.alpha), init_lora_weights="gaussian")
    pipe.unet.add_adapter(LoraConfig(target_modules=list(UNET_TARGETS), **config), adapter_name=adapter_name)
    modules = [pipe.unet]
    if settings.text_encoder:
        pipe.text_encoder.add_adapter(LoraConfig(target_modules=list(TEXT_TARGETS), **config), adapter_name=adapter_name)
        modules.append(pipe.text_encoder)
    params = [p for m in modules for n, p in m.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=float(settings.lr), weight_decay=0.0)
    gen = torch.Generator().manual_seed(int(seed))
    for m in modules:
        m.train()
    try:
        for _ in range(int(settings.steps)):
            pick = torch.randint(len(images), (int(settings.batch_size),), generator=gen).tolist()
            forms = torch.randint(1 << 30, (len(pick),), generator=gen).tolist()
            prompts = [captions[i][f % len(captions[i])] for i, f in zip(pick, forms)]
            loss = denoising_loss(pipe, schedule, x0_all[pick], prompts, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out.mkdir(parents=True, exist_ok=True)
        # Only the adapters: a text encoder whose embeddings grew (a textual-inversion token loaded) would otherwise
        # have them saved too, which load_lora_weights refuses.
        unet_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(
            pipe.unet, adapter_name=adapter_name, save_embedding_layers=False))
        text_layers = (convert_state_dict_to_diffusers(get_peft_model_state_dict(
            pipe.text_encoder, adapter_name=adapter_name, save_embedding_layers=False))
            if settings.text_encoder else None)
        StableDiffusionPipeline.save_lora_weights(str(out), unet_lora_layers=unet_layers,
                                                  text_encoder_lora_layers=text_layers, safe_serialization=True)
    finally:
        pipe.unet.delete_adapters(adapter_name)
        if settings.text_encoder:
            pipe.text_encoder.delete_adapter(adapter_name)  # transformers' PEFT integration: singular name
        for m in modules:
            m.eval()
    log.debug("LoRA %s: final loss %.4f", adapter_name, loss.item())
    return out / "pytorch_lora_weights.safetensors"
