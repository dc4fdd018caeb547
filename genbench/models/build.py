"""Build models from shipped configs with a fixed seed and save them once, so they load like any checkpoint.

``tiny-sd`` / ``tiny-clip`` prove the plumbing offline; ``sd21-base`` is the published SD 2.1-base architecture with
random weights, whose speed is the real speed (benchmarks). The generator families' configs (``tiny-<family>``,
``<family>``) are built by :mod:`genbench.models.build_families`. Nothing here downloads anything.
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


def _model_dir(kind: str, config: dict[str, Any], cache_dir: str | None,
               versions: dict[str, int] | None = None) -> Path:
    key = config_hash({"builder": _BUILDER_VERSION, "config": config, **(versions or {})})
    return Path(cache_dir or default_cache_dir()) / "models" / f"{kind}-{key}"


def built_pipeline_dir(config_name: str = "tiny-sd", cache_dir: str | None = None) -> Path:
    """Directory of a diffusers pipeline built from ``configs/<config_name>.json`` (built and saved on first use).
    A config with ``models`` is a family config (:mod:`genbench.models.build_families`); the first configs
    (``tiny-sd``, ``sd21-base``) are StableDiffusionPipeline configs read by :func:`sd_modules`."""
    config = load_config(config_name)
    if "models" in config:
        from genbench.models.build_families import BUILDER_VERSION, save_family_pipeline
        from genbench.models.text_tokenizers import TOKENIZER_VERSION

        versions = {"families": BUILDER_VERSION, "tokenizers": TOKENIZER_VERSION}
        target = _model_dir(config_name, config, cache_dir, versions)
        return build_once(target, lambda tmp: save_family_pipeline(config, tmp), marker="model_index.json")
    target = _model_dir(config_name, config, cache_dir)
    return build_once(target, lambda tmp: _save_sd_pipeline(config, tmp), marker="model_index.json")


def built_clip_dir(config_name: str = "tiny-clip", cache_dir: str | None = None) -> Path:
    """Directory with ``open_clip_config.json`` + safetensors weights, loadable via ``local-dir:``."""
    config = load_config(config_name)
    target = _model_dir(config_name, config, cache_dir)
    return build_once(target, lambda tmp: save_open_clip(config, tmp), marker="open_clip_config.json")


def sd_modules(config: dict[str, Any], text_overrides: dict[str, Any] | None = None) -> tuple[Any, Any, Any]:
    """(UNet, VAE, text encoder) of a StableDiffusionPipeline config with random weights, one seed per component
    (seed, seed+1, seed+2), so a change to one component's config leaves the others' weights unchanged.
    ``text_overrides``: text-encoder config values set by the caller (a reduced vocabulary's size and ids)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**config["unet"])
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**config["vae"])
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**{**config["text_encoder"], **(text_overrides or {})}))
    return unet, vae, text_encoder


def _save_sd_pipeline(config: dict[str, Any], out: Path) -> None:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    if config.get("pipeline") != "StableDiffusionPipeline":
        raise ValueError(f"builder supports StableDiffusionPipeline configs, got {config.get('pipeline')!r}")
    unet, vae, text_encoder = sd_modules(config)
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


def save_open_clip(config: dict[str, Any], out: Path, model_cfg: dict[str, Any] | None = None,
                   half: bool = False) -> None:
    """An open_clip checkpoint with random weights (seeded): ``open_clip_config.json`` and safetensors weights
    (float16 with ``half``). ``model_cfg``: the architecture, if not the config's own."""
    import open_clip
    from safetensors.torch import save_file

    model_cfg = model_cfg if model_cfg is not None else config["model_cfg"]
    torch.manual_seed(int(config.get("seed", 0)))
    # CLIP(**cfg) is what open_clip's factory instantiates for a config without custom text/timm/hf towers.
    model = open_clip.CLIP(**model_cfg)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    meta = {"model_cfg": model_cfg, "preprocess_cfg": config.get("preprocess_cfg", {})}
    (out / "open_clip_config.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
