"""Train the toy text-to-image model on the digits train split: the StableDiffusionPipeline structure, small.

Components (``configs/toy-sd.json``): a CLIP text encoder and CLIP BPE tokenizer (reduced to the toy corpus), a
UNet2DConditionModel, and an AutoencoderKL with two blocks: 8x8 pixel images, 4x4x4 latents. Training follows latent
diffusion: first the autoencoder (reconstruction + a small KL term),
then its latents are scaled to unit variance and the UNet learns to predict the noise (epsilon) given the prompt's
text-encoder states, trained jointly with the text encoder. Prompts are the forms every strategy sends (templates,
the bare class name, "a photo of ...", with and without the RD suffix), and some are dropped to "" so classifier-free
guidance and negative prompts work. Saved with ``save_pretrained`` (safetensors) and loaded with ``from_pretrained``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from genbench.models.bpe import write_clip_tokenizer_files
from genbench.models.build import sd_modules
from genbench.models.cache import file_digest
from genbench.models.toy.data import toy_corpus, training_set
from genbench.models.toy.runtime import deterministic, learning_rate

log = logging.getLogger(__name__)

# The RD strategy's suffix as the text encoder receives it: plain when weighted (brackets become weights), literal else.
RD_SUFFIXES = (", sharp focus, highly detailed, hires", ", ((sharp focus)), ((highly detailed)), ((hires))")


def _components(config: dict[str, Any], out: Path, texts: list[str]) -> dict[str, Any]:
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler
    from transformers import CLIPTokenizer

    tok_dir = write_clip_tokenizer_files(out / "_bpe", texts=texts)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), model_max_length=config["text_encoder"]["max_position_embeddings"])
    # The reduced vocabulary's size and special ids (BOS, EOS last; padding is EOS, as CLIP's).
    unet, vae, text_encoder = sd_modules(config, {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                                                  "eos_token_id": tokenizer.eos_token_id,
                                                  "pad_token_id": tokenizer.pad_token_id})
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "tok_dir": tok_dir,
            "noise": DDPMScheduler(**config["train_scheduler"]),
            "scheduler": DPMSolverMultistepScheduler(**config["scheduler"])}


def _pixels(images: list) -> torch.Tensor:
    """RGB PIL images -> float tensor (N, 3, H, W) in [-1, 1], as the pipeline's image processor scales them."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _train_autoencoder(vae: Any, pixels: torch.Tensor, train: dict[str, Any], gen: torch.Generator,
                       progress: bool) -> tuple[float, float]:
    steps, batch, peak = int(train["vae_steps"]), int(train["batch_size"]), float(train["vae_lr"])
    kl_weight = float(train.get("kl_weight", 1e-4))
    opt = torch.optim.AdamW(vae.parameters(), lr=peak, weight_decay=0.0)
    vae.train()
    recon = 0.0
    for step in tqdm(range(steps), desc="toy VAE", disable=not progress, leave=False):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps, peak, int(train.get("warmup", 50)))
        x = pixels[torch.randint(len(pixels), (batch,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        loss_rec = F.mse_loss(vae.decode(z).sample, x)
        loss = loss_rec + kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        recon = loss_rec.item()
    vae.eval()
    with torch.no_grad():
        means = torch.cat([vae.encode(pixels[i : i + 256]).latent_dist.mean for i in range(0, len(pixels), 256)])
    return recon, float(means.std())


def train_toy_sd(config: dict[str, Any], out: Path, progress: bool = False) -> dict[str, Any]:
    """Train into ``out`` (a diffusers pipeline directory); returns facts for the record."""
    from diffusers import StableDiffusionPipeline

    train = config["train"]
    data = training_set(train.get("dataset", "digits"), extra_forms=True)
    with deterministic(int(train.get("threads", 2))):
        parts = _components(config, out, toy_corpus(data.dataset))
        vae, unet, text_encoder, tokenizer, noise = (parts[k] for k in ("vae", "unet", "text_encoder", "tokenizer", "noise"))
        gen = torch.Generator().manual_seed(int(train.get("seed", 0)))
        pixels = _pixels(data.images)
        labels = torch.from_numpy(data.labels)
        vae_recon, latent_std = _train_autoencoder(vae, pixels, train, gen, progress)
        scaling = 1.0 / latent_std
        vae.register_to_config(scaling_factor=scaling)
        with torch.no_grad():
            latents = torch.cat([vae.encode(pixels[i : i + 256]).latent_dist.mean
                                 for i in range(0, len(pixels), 256)]) * scaling
        vae.requires_grad_(False)

        # Every caption (x RD suffix variants) per class, tokenised once; row -1 is the empty prompt.
        variants = ("",) + RD_SUFFIXES
        captions = [[c + v for c in per_class for v in variants] for per_class in data.captions]
        flat = [c for per_class in captions for c in per_class] + [""]
        first = torch.tensor(np.cumsum([0] + [len(c) for c in captions])[:-1])
        count = torch.tensor([len(c) for c in captions])
        tokens = tokenizer(flat, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                           return_tensors="pt").input_ids

        steps, batch, peak = int(train["steps"]), int(train["batch_size"]), float(train["lr"])
        drop = float(train.get("uncond_prob", 0.1))
        params = list(unet.parameters()) + list(text_encoder.parameters())
        opt = torch.optim.AdamW(params, lr=peak, weight_decay=float(train.get("weight_decay", 0.01)))
        unet.train()
        text_encoder.train()
        losses = []
        for step in tqdm(range(steps), desc="toy SD", disable=not progress, leave=False):
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, steps, peak, int(train.get("warmup", 50)))
            idx = torch.randint(len(labels), (batch,), generator=gen)
            y = labels[idx]
            pick = first[y] + (torch.rand(batch, generator=gen) * count[y]).long()
            pick = torch.where(torch.rand(batch, generator=gen) < drop, torch.full_like(pick, len(flat) - 1), pick)
            x0 = latents[idx]
            eps = torch.randn(x0.shape, generator=gen)
            t = torch.randint(noise.config.num_train_timesteps, (batch,), generator=gen)
            states = text_encoder(tokens[pick])[0]
            pred = unet(noise.add_noise(x0, eps, t), t, encoder_hidden_states=states).sample
            loss = F.mse_loss(pred, eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(loss.item())
        unet.eval()
        text_encoder.eval()
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=parts["scheduler"], safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    # Stored in float16 (the repository ships these weights); from_pretrained casts to the dtype asked for.
    for module in (vae, unet, text_encoder):
        module.to(dtype=torch.float16)
    pipe.save_pretrained(str(out), safe_serialization=True)
    for f in parts["tok_dir"].iterdir():
        f.unlink()
    parts["tok_dir"].rmdir()
    return {
        "data": {"dataset": data.dataset, "split": "train", "images": len(labels), "fingerprint": data.fingerprint},
        "steps": steps, "vae_steps": int(train["vae_steps"]), "final_loss": round(float(np.mean(losses[-50:])), 4),
        "vae_reconstruction_mse": round(vae_recon, 5), "latent_scaling_factor": round(scaling, 6),
        "weights_sha256": {str(p.relative_to(out)): file_digest(p) for p in sorted(out.rglob("*.safetensors"))},
        "torch": torch.__version__,
    }
