"""CLIP references -> an encoder of images and texts into L2-normalised float32 vectors (open_clip underneath).

References: ``toy`` (trained here on the digits train split, :mod:`genbench.models.toy`), ``tiny`` (offline model
built from ``configs/tiny-clip.json``), ``ARCH:TAG`` (open_clip architecture with a
pretrained tag, e.g. ``ViT-B-32:openai``), ``ARCH:random`` (published architecture, random weights: for throughput
measurements), ``hf-hub:org/repo``, ``local-dir:/path`` or a plain directory holding ``open_clip_config.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from genbench.errors import UsageError
from genbench.models import refs
from genbench.models.device import resolve_device
from genbench.vectors import normalise

log = logging.getLogger(__name__)


@dataclass
class _Resolved:
    model_name: str  # what open_clip's factory gets
    pretrained: str | None
    slug: str
    is_tiny: bool
    quick_gelu: bool = False


def _resolve(ref: str, cache_dir: str | None) -> _Resolved:
    import open_clip

    refs.check_clip(ref)
    slug = refs.clip_slug(ref)
    if ref == "tiny":
        from genbench.models.build import built_clip_dir

        return _Resolved(f"local-dir:{built_clip_dir('tiny-clip', cache_dir)}", None, slug, True)
    if ref == "toy":
        from genbench.models.toy import toy_model_dir

        return _Resolved(f"local-dir:{toy_model_dir(refs.TOY_CLIP, cache_dir)}", None, slug, False)
    if ref.startswith("hf-hub:"):
        return _Resolved(ref, None, slug, False)
    local = refs.clip_local_dir(ref)
    if local is not None:
        return _Resolved(f"local-dir:{local}", None, slug, False)
    arch, _, tag = ref.partition(":")
    if arch not in open_clip.list_models():
        raise UsageError("clip", ref, refs.ALLOWED_CLIP + f" (unknown architecture {arch!r})")
    if tag == "random":
        return _Resolved(arch, None, slug, False)
    known = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in known:
        raise UsageError("clip", ref, f"a pretrained tag of {arch}: " + ", ".join(known + ["random"]))
    # OpenAI's weights were trained with QuickGELU while open_clip's plain ViT configs use GELU: follow the tag.
    quick = bool(open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False))
    return _Resolved(arch, tag, slug, False, quick_gelu=quick)


class ClipEncoder:
    """A loaded CLIP model with its eval preprocessing and tokenizer; outputs are unit vectors on the CPU as numpy."""

    def __init__(self, ref: str, slug: str, is_tiny: bool, model: Any, preprocess: Callable, tokenizer: Callable,
                 device: torch.device):
        self.ref, self.slug, self.is_tiny = ref, slug, is_tiny
        self.model, self.preprocess, self.tokenizer, self.device = model, preprocess, tokenizer, device
        self.dim = int(model.text_projection.shape[1] if getattr(model, "text_projection", None) is not None
                       else model.visual.output_dim)
        pp = model.visual.preprocess_cfg
        # Everything that changes pixels -> embedding for the same model; used in cache keys of embedded test sets.
        self.preprocess_id = (
            f"size={pp['size']};mean={_fmt(pp['mean'])};std={_fmt(pp['std'])};"
            f"interp={pp['interpolation']};resize={pp['resize_mode']};fill={pp.get('fill_color', 0)}"
        )

    @torch.inference_mode()
    def encode_images(self, images: list, batch_size: int = 64) -> np.ndarray:
        """float32 (N, dim), each row L2-normalised."""
        out = []
        for start in range(0, len(images), batch_size):
            batch = torch.stack([self.preprocess(im.convert("RGB")) for im in images[start : start + batch_size]])
            feats = self.model.encode_image(batch.to(self.device))
            out.append(_unit(feats))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """float32 (N, dim), each row L2-normalised."""
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start : start + batch_size]))
            out.append(_unit(self.model.encode_text(tokens.to(self.device))))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def __repr__(self) -> str:
        return f"ClipEncoder(ref={self.ref!r}, slug={self.slug!r}, dim={self.dim}, device={self.device})"


def _fmt(values: Any) -> str:
    return ",".join(f"{float(v):.4f}" for v in values) if isinstance(values, (list, tuple)) else str(values)


def _unit(feats: torch.Tensor) -> np.ndarray:
    # Normalise in float32 whatever the compute dtype was, so rows are unit length to float32 precision.
    return normalise(feats.float().cpu().numpy())


def load_clip(ref: str, device: str | None = None, cache_dir: str | None = None) -> ClipEncoder:
    """Load a CLIP model by reference (see module docstring) through ``open_clip.create_model_and_transforms``."""
    import open_clip

    resolved = _resolve(ref, cache_dir)
    dev = resolve_device(device, field="device")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            resolved.model_name,
            pretrained=resolved.pretrained,
            device=dev,
            force_quick_gelu=resolved.quick_gelu,
            cache_dir=None if resolved.is_tiny else cache_dir,
        )
    except (OSError, RuntimeError) as e:
        if not (resolved.pretrained or resolved.model_name.startswith("hf-hub:")):
            raise
        # Weights to fetch, but offline (HF_HUB_OFFLINE=1) and not in the local cache, or no such repo.
        raise UsageError("clip", ref, refs.ALLOWED_CLIP + f" (loading failed: {str(e).splitlines()[0]})") from e
    model.eval()
    # For local-dir the tokenizer comes from the dir's config: a plain open_clip config means the bundled BPE vocabulary.
    tokenizer = open_clip.get_tokenizer(resolved.model_name)
    log.info("loaded CLIP %s (%s) on %s", ref, resolved.model_name, dev)
    return ClipEncoder(ref, resolved.slug, resolved.is_tiny, model, preprocess, tokenizer, dev)
