"""What both adaptation trainers share: reference images -> latents, and one denoising-loss step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def latents(pipe: Any, images: list[Image.Image]) -> torch.Tensor:
    """The VAE latents (posterior mean, scaled) of ``images`` resized to the pipeline's resolution. Images smaller
    than that are upsampled (bicubic), as the paper's CIFAR references had to be."""
    size = int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
    out = []
    for start in range(0, len(images), ENCODE_BATCH):  # a dataset-wide LoRA has every class's shots: bounded batches
        arr = np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32)
                        for im in images[start : start + ENCODE_BATCH]]) / 127.5 - 1.0
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).to(pipe.vae.device, pipe.vae.dtype)
        with torch.no_grad():
            out.append(pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor)
    return torch.cat(out)


ENCODE_BATCH = 16


def noise_schedule(pipe: Any) -> Any:
    """A DDPM schedule with the pipeline's own betas (its inference scheduler may be another solver)."""
    from diffusers import DDPMScheduler

    cfg = pipe.scheduler.config
    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start,
                         beta_end=cfg.beta_end, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.get("prediction_type", "epsilon"))


def denoising_loss(pipe: Any, schedule: Any, x0: torch.Tensor, prompts: list[str], gen: torch.Generator) -> torch.Tensor:
    """The diffusion training loss of ``x0`` under ``prompts``: noise at a random timestep, predict it (epsilon or v)."""
    tok = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids.to(x0.device)
    eps = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
    t = torch.randint(schedule.config.num_train_timesteps, (x0.shape[0],), generator=gen).to(x0.device)
    states = pipe.text_encoder(tok)[0]
    pred = pipe.unet(schedule.add_noise(x0, eps, t), t, encoder_hidden_states=states).sample
    target = schedule.get_velocity(x0, eps, t) if schedule.config.prediction_type == "v_prediction" else eps
    return F.mse_loss(pred.float(), target.float())
