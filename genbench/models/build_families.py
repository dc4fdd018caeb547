"""Build any family's diffusers pipeline from a shipped config with random weights (seeded), offline, and save it.

A family config (``configs/<family>.json``, ``configs/tiny-<family>.json``) names the pipeline class and its parts::

    {"pipeline": "FluxPipeline", "seed": 0, "save_dtype": "bf16",
     "models": {"transformer": {"class": "FluxTransformer2DModel", ...its config...}, "vae": {...}, ...},
     "tokenizers": {"tokenizer": {"kind": "clip", "model_max_length": 77}, "tokenizer_2": {"kind": "t5", ...}},
     "scheduler": {"class": "FlowMatchEulerDiscreteScheduler", ...}}

Each model is a diffusers class built from its config, or a transformers model class built from its ``config_class``;
model i is initialised under seed ``seed + i`` (so changing one part's config leaves the others' weights unchanged),
created in ``save_dtype`` (bf16 halves a real-size build in memory and on disk; the loader casts to the run's dtype).
Tokenizers: ``clip`` from open_clip's bundled BPE vocabulary (:mod:`genbench.models.bpe`), ``t5`` and ``gemma`` built
with the ``tokenizers`` library (:mod:`genbench.models.text_tokenizers`). ``extends`` (resolved by
:func:`genbench.models.cache.load_config`) lets a config be another one with a few values changed. ``default_size``
(optional) is the image size a build generates at when its pipeline cannot tell (FLUX's is fixed at 128 latents).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

# Bump when the builder itself changes what it writes: the cache key then changes too.
BUILDER_VERSION = 1
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _model(spec: dict[str, Any]) -> Any:
    import diffusers
    import transformers

    spec = dict(spec)
    name = spec.pop("class")
    if hasattr(diffusers, name):
        return getattr(diffusers, name)(**spec)
    cls = getattr(transformers, name)
    return cls(cls.config_class(**spec))


def _tokenizer(spec: dict[str, Any], scratch: Path) -> Any:
    from genbench.models import text_tokenizers

    spec = dict(spec)
    kind, length = spec.pop("kind"), int(spec.pop("model_max_length"))
    if kind == "clip":
        from transformers import CLIPTokenizer

        from genbench.models.bpe import write_clip_tokenizer_files

        return CLIPTokenizer.from_pretrained(str(write_clip_tokenizer_files(scratch)), model_max_length=length, **spec)
    if kind == "t5":
        return text_tokenizers.t5_tokenizer(length)
    if kind == "gemma":
        return text_tokenizers.gemma_tokenizer(length)
    raise ValueError(f"tokenizer kind {kind!r}: one of clip, t5, gemma")


def scheduler(spec: dict[str, Any]) -> Any:
    """A scheduler from a config's ``scheduler`` entry (``class`` defaults to DPMSolverMultistepScheduler, the class of
    the first shipped configs, which do not name one)."""
    import diffusers

    spec = dict(spec)
    return getattr(diffusers, spec.pop("class", "DPMSolverMultistepScheduler"))(**spec)


def check_vocab(name: str, tokenizer: Any, model: Any) -> None:
    """A text encoder must have an embedding row for every id its tokenizer produces."""
    rows = getattr(getattr(model, "config", None), "vocab_size", None)
    if rows is not None and len(tokenizer) > rows:
        raise ValueError(f"{name}: the tokenizer has {len(tokenizer)} ids but the text encoder's vocab_size is {rows}")


def save_family_pipeline(config: dict[str, Any], out: Path) -> None:
    """Build the pipeline ``config`` describes (see the module docstring) and ``save_pretrained`` it into ``out``."""
    import diffusers

    pipeline = getattr(diffusers, config["pipeline"])
    seed, dtype = int(config.get("seed", 0)), DTYPES[config.get("save_dtype", "fp32")]
    parts: dict[str, Any] = {}
    for i, (name, spec) in enumerate(config["models"].items()):
        torch.manual_seed(seed + i)
        # Created (and initialised) in the save dtype: a real-size T5-XXL never exists in fp32 (19 GB) on the way.
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            parts[name] = _model(spec).eval()
        finally:
            torch.set_default_dtype(previous)
    scratch = out / "_bpe"
    for name, spec in config["tokenizers"].items():
        parts[name] = _tokenizer(spec, scratch)
        encoder = parts.get(name.replace("tokenizer", "text_encoder"))
        check_vocab(name, parts[name], encoder)
    parts["scheduler"] = scheduler(config["scheduler"])
    extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False} \
        if config["pipeline"] == "StableDiffusionPipeline" else {}
    pipe = pipeline(**parts, **extra)
    pipe.save_pretrained(str(out), safe_serialization=True)
    shutil.rmtree(scratch, ignore_errors=True)
