"""Train the toy CLIP contrastively on the digits train split, captions from the dataset's templates.

The model is a plain open_clip ``CLIP`` from ``configs/toy-clip.json``, with a CLIP BPE tokenizer reduced to the toy
corpus (saved in the directory; open_clip reads it through ``hf_tokenizer_name``). It is saved first as an untrained
checkpoint and loaded back through ``open_clip.create_model_and_transforms("local-dir:...")``: training sees exactly
the eval preprocessing and tokenizer that scoring will use. Many images share one caption (there are 10 classes), so the loss
is CLIP's symmetric cross-entropy with every caption of an image's class a positive (not a negative).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from genbench.models.bpe import write_clip_tokenizer_files
from genbench.models.build import save_open_clip
from genbench.models.cache import file_digest
from genbench.models.toy.data import toy_corpus, training_set
from genbench.models.toy.runtime import deterministic, learning_rate, save_half

log = logging.getLogger(__name__)


def random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: float, max_degrees: float) -> torch.Tensor:
    """Each image moved by up to ``max_shift`` (a fraction of its half-width) and turned by up to ``max_degrees``;
    uncovered pixels are 0 (black, the digits' background before normalisation)."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * (max_degrees * np.pi / 180.0)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * max_shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def multi_positive_loss(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row against a uniform target over its positives (rows without one are skipped)."""
    counts = positives.sum(1)
    keep = counts > 0
    target = positives[keep] / counts[keep, None]
    return -(F.log_softmax(logits[keep], dim=1) * target).sum(1).mean()


def _save_untrained(config: dict[str, Any], texts: list[str], out: Path) -> None:
    """The initial checkpoint: tokenizer files, ``open_clip_config.json`` with the vocabulary's size, weights."""
    from transformers import CLIPTokenizer

    files = write_clip_tokenizer_files(out / "_bpe", texts=texts)
    tokenizer = CLIPTokenizer.from_pretrained(str(files), model_max_length=config["model_cfg"]["text_cfg"]["context_length"])
    tokenizer.save_pretrained(str(out))
    for f in files.iterdir():
        f.unlink()
    files.rmdir()
    model_cfg = json.loads(json.dumps(config["model_cfg"]))
    # Any non-empty hf_tokenizer_name makes open_clip read the tokenizer saved in the local directory itself.
    model_cfg["text_cfg"].update(vocab_size=len(tokenizer), hf_tokenizer_name="local")
    save_open_clip(config, out, model_cfg, half=True)


def train_toy_clip(config: dict[str, Any], out: Path, progress: bool = False) -> dict[str, Any]:
    """Train into ``out`` (``open_clip_config.json`` + ``open_clip_model.safetensors``); returns facts for the record."""
    import open_clip

    train = config["train"]
    data = training_set(train.get("dataset", "digits"))
    with deterministic(int(train.get("threads", 2))):
        _save_untrained(config, toy_corpus(data.dataset), out)
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}", device="cpu")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
        pp = model.visual.preprocess_cfg
        mean = torch.tensor(pp["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(pp["std"]).view(1, 3, 1, 1)
        # Pixels in [0, 1] (un-normalised), so a shift fills with true black; normalised per batch below.
        pixels = torch.stack([preprocess(im) for im in data.images]) * std + mean
        labels = torch.from_numpy(data.labels)
        texts = [c for per_class in data.captions for c in per_class]
        text_cls = torch.tensor([k for k, per_class in enumerate(data.captions) for _ in per_class])
        tokens = tokenizer(texts)

        gen = torch.Generator().manual_seed(int(train.get("seed", 0)))
        steps, batch = int(train["steps"]), int(train["batch_size"])
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(train.get("weight_decay", 0.1))},
                                 {"params": rest, "weight_decay": 0.0}], lr=float(train["lr"]), betas=(0.9, 0.98))
        model.train()
        losses = []
        for step in tqdm(range(steps), desc="toy CLIP", disable=not progress, leave=False):
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, steps, float(train["lr"]), int(train.get("warmup", 50)))
            idx = torch.randint(len(labels), (batch,), generator=gen)
            x = random_shift(pixels[idx], gen, float(train.get("max_shift", 0.15)), float(train.get("max_degrees", 10)))
            img = F.normalize(model.encode_image((x - mean) / std), dim=-1)
            # All captions (a few per class) every step: each is a positive for its class's images.
            txt = F.normalize(model.encode_text(tokens), dim=-1)
            logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
            pos = (labels[idx][:, None] == text_cls[None, :]).float()
            loss = (multi_positive_loss(logits, pos) + multi_positive_loss(logits.T, pos.T)) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            img = F.normalize(model.encode_image((pixels - mean) / std), dim=-1)
            txt = F.normalize(model.encode_text(tokens), dim=-1).view(len(data.captions), -1, img.shape[1])
            cls_txt = F.normalize(txt.mean(1), dim=-1)
            train_zeroshot = float(((img @ cls_txt.T).argmax(1) == labels).float().mean())
    weights = out / "open_clip_model.safetensors"
    save_half(model.state_dict(), weights)
    return {
        "data": {"dataset": data.dataset, "split": "train", "images": len(labels), "fingerprint": data.fingerprint},
        "steps": steps, "final_loss": round(float(np.mean(losses[-20:])), 4),
        "train_zeroshot_accuracy": round(train_zeroshot, 4),
        "weights_sha256": {weights.name: file_digest(weights)},
        "torch": torch.__version__,
    }
