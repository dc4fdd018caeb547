"""Build models from shipped configs with a fixed seed and save them once, so they load like any checkpoint.

``tiny-sd`` / ``tiny-clip`` prove the plumbing offline; ``sd21-base`` is the published SD 2.1-base architecture with
random weights, whose speed is the real speed (benchmarks). Nothing here downloads anything.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from genbench.models.bpe import write_clip_tokenizer_files
from genbench.models.cache import build_once, config_hash, default_cache_dir, load_config

log = logging.getLogger(__name__)

# Bump when the builder itself changes what it writes: the cache key then changes too.
_BUILDER_VERSION = 1


def _model_dir(kind: str, config: dict[str, Any], cache_dir: str | None) -> Path:
    key = config_hash({"builder": _BUILDER_VERSION, "config": config})
    return Path(cache_dir or default_cache_dir()) / "models" / f"{kind}-{key}"


def built_pipeline_dir(config_name: str = "tiny-sd", cache_dir: str | None = None) -> Path:
    """Directory of a diffusers pipeline built from ``configs/<config_name>.json`` (built and saved on first use)."""
    config = load_config(config_name)
    target = _model_dir(config_name, config, cache_dir)
    return build_once(target, lambda tmp: _save_sd_pipeline(config, tmp), marker="model_index.json")


def built_clip_dir(config_name: str = "tiny-clip", cache_dir: str | None = None) -> Path:
    """Directory with ``open_clip_config.json`` + safetensors weights, loadable via ``local-dir:``."""
    config = load_config(config_name)
    target = _model_dir(config_name, config, cache_dir)
    return build_once(target, lambda tmp: _save_open_clip(config, tmp), marker="open_clip_config.json")


def _save_sd_pipeline(config: dict[str, Any], out: Path) -> None:
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if config.get("pipeline") != "StableDiffusionPipeline":
        raise ValueError(f"builder supports StableDiffusionPipeline configs, got {config.get('pipeline')!r}")
    # One seed per component, so a change to one component's config leaves the others' weights unchanged.
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**config["unet"])
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**config["vae"])
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**config["text_encoder"]))
    tok_dir = write_clip_tokenizer_files(out / "_bpe")
    tokenizer = CLIPTokenizer.from_pretrained(
        str(tok_dir), model_max_length=config["text_encoder"]["max_position_embeddings"], **config.get("tokenizer", {})
    )
    scheduler = DPMSolverMultistepScheduler(**config["scheduler"])
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)
    for f in tok_dir.iterdir():
        f.unlink()
    tok_dir.rmdir()


def _save_open_clip(config: dict[str, Any], out: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    model_cfg = config["model_cfg"]
    torch.manual_seed(int(config.get("seed", 0)))
    # CLIP(**cfg) is what open_clip's factory instantiates for a config without custom text/timm/hf towers.
    model = open_clip.CLIP(**model_cfg)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    meta = {"model_cfg": model_cfg, "preprocess_cfg": config.get("preprocess_cfg", {})}
    (out / "open_clip_config.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
