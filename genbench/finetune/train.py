"""Fine-tune CLIP on a collection and choose the checkpoint on a validation split carved from the training images.

The objective keeps CLIP's form (the FLYP / DataDream way): a class's text embedding is the normalised mean of its
normalised template embeddings, ``logits = scale * image . text`` over all classes, and cross-entropy against the
image's class; both towers learn. Every epoch ends with the validation split scored in the dataset's own metric, and
the best epoch's weights are kept. Epoch 0 (the model before any step) is scored for reference but is not a candidate:
the score measures what fine-tuning on the data gives, and "no fine-tuning" is the zero-shot score beside it.

Nothing here loads a dataset's test split: :func:`select` is handed the training images and nothing else, so the real
test split cannot steer the choice (:mod:`genbench.finetune.score` opens it once the choice is made).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from genbench.catalog.loaders.base import SplitData
from genbench.errors import UsageError
from genbench.finetune.settings import FinetuneSettings
from genbench.metrics import task
from genbench.models.clip import ClipEncoder
from genbench.models.toy.runtime import learning_rate
from genbench.seeds import sample_seed
from genbench.shards.reader import read_samples
from genbench.shards.store import Store

log = logging.getLogger(__name__)

# open_clip's towers: nn.MultiheadAttention blocks named ``attn`` (peft adapts its packed q/k/v and output
# projections) and the MLP's ``c_fc`` / ``c_proj`` linear layers, in the image and the text transformer alike.
LORA_TARGETS = ("attn", "c_fc", "c_proj")
TEXT_CHUNK = 1024  # texts per forward pass when the full template ensemble is encoded


@dataclass
class TrainingData:
    """Training images (encoded bytes as stored in the shards, or decoded originals) and their classes."""

    images: list[bytes | Image.Image]
    labels: np.ndarray
    n_collection: int
    n_original: int = 0

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class Selection:
    """The outcome of :func:`select`: the chosen model and how it was chosen.

    ``curve`` holds one entry per evaluated epoch (0 = before training, for reference only): ``epoch``, ``steps`` so
    far, mean ``train_loss`` of that epoch, ``val_loss`` and ``val_score`` (percent, the dataset's metric);
    ``train_seconds`` is the wall time of epochs 1.. (validation included)."""

    encoder: ClipEncoder
    chosen_epoch: int
    curve: list[dict[str, Any]]
    steps: int
    train_seconds: float
    n_train: int
    n_val: int
    trainable_parameters: int


def collection_data(store: Store, shard_names: list[str], num_classes: int, shots: int | None = None) -> TrainingData:
    """The samples of ``shard_names`` (only shots < ``shots`` when given), kept encoded in memory; a class index
    outside the dataset is refused."""
    images: list[bytes | Image.Image] = []
    labels: list[int] = []
    for name in shard_names:
        for sample in read_samples(store, name):
            if shots is not None and sample.shot >= shots:
                continue
            if not 0 <= sample.cls < num_classes:
                raise UsageError("--collection", f"{store.url(name + '.tar')}: class {sample.cls}",
                                 f"class indices 0..{num_classes - 1} of the collection's dataset")
            images.append(sample.image)
            labels.append(int(sample.cls))
    return TrainingData(images, np.asarray(labels, dtype=np.int64), n_collection=len(images))


def with_originals(data: TrainingData, train_split: SplitData, class_names: tuple[str, ...], shots: int,
                   run_seed: int) -> TrainingData:
    """``data`` plus each class's first ``shots`` real training images, in the original source's own order (the
    images of the ``shots``-shot original collection made with ``run_seed``)."""
    from genbench.adapt.references import original_shots

    images, labels = list(data.images), list(data.labels.tolist())
    added = 0
    for cls in range(len(class_names)):
        picked = original_shots(train_split, class_names, cls, shots, run_seed)
        images += picked
        labels += [cls] * len(picked)
        added += len(picked)
    return TrainingData(images, np.asarray(labels, dtype=np.int64), data.n_collection, data.n_original + added)


def carve_validation(labels: np.ndarray, fraction: float, seed: int, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): per class, a seeded shuffle of its images and the first
    ``round(fraction * n)`` of them (at least one, and never all: a class of one image stays in training) held out."""
    train_parts, val_parts = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng = np.random.default_rng(sample_seed(seed, dataset, int(cls), 0, purpose="finetune-validation"))
        members = members[rng.permutation(len(members))]
        n_val = min(len(members) - 1, max(1, round(fraction * len(members))))
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    train_idx = np.sort(np.concatenate(train_parts)) if train_parts else np.zeros(0, np.int64)
    val_idx = np.sort(np.concatenate(val_parts)) if val_parts else np.zeros(0, np.int64)
    if len(val_idx) == 0:
        raise UsageError("finetune.val_fraction", fraction,
                         "a training set with at least 2 images in some class (one of them validates)")
    return train_idx, val_idx


def _pil(item: bytes | Image.Image) -> Image.Image:
    from genbench.shards.schema import decode_image

    return decode_image(item) if isinstance(item, bytes) else item.convert("RGB")


def _pixels(clip: ClipEncoder, images: list[bytes | Image.Image], idx: np.ndarray | list[int]) -> torch.Tensor:
    return torch.stack([clip.preprocess(_pil(images[int(i)])) for i in idx]).to(clip.device)


def _attach(model: torch.nn.Module, settings: FinetuneSettings) -> torch.nn.Module:
    """Make ``model``'s trainable weights those of ``settings.mode``: LoRA adapters on both towers, or everything."""
    if settings.mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, target_modules=list(LORA_TARGETS),
                        lora_dropout=0.0, bias="none")
    try:
        model = inject_adapter_in_model(config, model)
    except ValueError as exc:  # peft: none of the target modules exists in this architecture
        raise UsageError("finetune.mode", "lora", f"full (this CLIP has no {'/'.join(LORA_TARGETS)} layers: "
                                                  f"{str(exc).splitlines()[0][:200]})") from None
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    towers = {"image" if n.startswith("visual.") else "text" for n, p in model.named_parameters() if p.requires_grad}
    if towers != {"image", "text"}:
        log.warning("LoRA adapters only on the %s tower: the other has no %s layers", "/".join(sorted(towers)),
                    "/".join(LORA_TARGETS))
    return model


def _merge_adapters(model: torch.nn.Module) -> None:
    """Fold LoRA adapters into their base weights (inference then runs at the base model's speed)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer) and not module.merged:  # an MHA adapter merges its out_proj too
            module.merge()


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # As CLIP trains: no decay on gains, biases, embeddings and the logit scale.
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in named if not (p.ndim >= 2 and "embedding" not in n)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def _restore(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        if name in state:
            p.copy_(state[name])


def _class_text(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """(C, D): per class (first axis of ``tokens``, shape (C, T, L)), the normalised mean of its normalised template
    embeddings, encoded in chunks."""
    c, t, length = tokens.shape
    flat = tokens.reshape(c * t, length)
    parts = [F.normalize(model.encode_text(flat[s : s + TEXT_CHUNK]).float(), dim=-1)
             for s in range(0, len(flat), TEXT_CHUNK)]
    return F.normalize(torch.cat(parts).view(c, t, -1).mean(1), dim=-1).float()


def _scale(model: torch.nn.Module) -> torch.Tensor:
    return model.logit_scale.exp().clamp(max=100.0).float()


def metric_labels(metric: str, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Single-label classes as the metric reads them: (N, C) 0/1 for the multi-label mAP, else as they are."""
    if metric == "map_11point" and labels.ndim == 1:
        return np.eye(num_classes, dtype=np.uint8)[labels]
    return labels


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Batches of indices from one seeded permutation of ``range(n)`` after another (a batch may span two)."""
    pending = torch.zeros(0, dtype=torch.long)
    while True:
        while len(pending) < batch_size:
            pending = torch.cat([pending, torch.randperm(n, generator=gen)])
        yield pending[:batch_size]
        pending = pending[batch_size:]


@contextlib.contextmanager
def _repeatable(device: torch.device, threads: int | None) -> Iterator[None]:
    """On the CPU: a fixed thread count and deterministic kernels, so a rerun gives the same curve to the bit. On a
    GPU: seeded only (cuBLAS is deterministic only under an environment variable set before CUDA starts)."""
    if device.type == "cpu":
        from genbench.models.toy.runtime import deterministic

        with deterministic(threads or torch.get_num_threads()):
            yield
    else:
        with torch.random.fork_rng(devices=[device]):
            yield


def _better(entry: dict[str, float], best: dict[str, float]) -> bool:
    """Higher validation score wins; a tie goes to the lower validation loss, then to the earlier epoch."""
    return (entry["val_score"], -entry["val_loss"]) > (best["val_score"], -best["val_loss"])


class _Trainer:
    """One fine-tuning run's moving parts: the model being trained, its optimiser, the seeded batch and template
    draws, and the tokenised prompts (classes x templates)."""

    def __init__(self, clip: ClipEncoder, class_names: tuple[str, ...], templates: tuple[str, ...],
                 data: TrainingData, train_idx: np.ndarray, settings: FinetuneSettings):
        self.clip, self.data, self.train_idx, self.settings = clip, data, train_idx, settings
        self.device = clip.device
        torch.manual_seed(settings.seed)  # peft draws the adapters' initial weights from the global RNG
        self.model = _attach(copy.deepcopy(clip.model), settings)
        tokens = clip.tokenizer([t.format(c) for c in class_names for t in templates]).to(self.device)
        self.tokens = tokens.view(len(class_names), len(templates), -1)
        self.per_step = min(settings.templates_per_step, len(templates))
        self.opt = torch.optim.AdamW(_param_groups(self.model, settings.weight_decay), lr=settings.peak_lr,
                                     betas=(0.9, 0.98))
        self.gen = torch.Generator().manual_seed(settings.seed)
        self.batches = _batches(len(train_idx), settings.batch_size, self.gen)
        self.labels = torch.from_numpy(data.labels)
        self.steps_per_epoch = settings.steps_per_epoch or math.ceil(len(train_idx) / settings.batch_size)
        self.total = self.steps_per_epoch * settings.epochs
        self.step = 0

    def autocast(self) -> Any:
        """bf16 autocast on a GPU; nothing on the CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else contextlib.nullcontext()

    def epoch(self) -> float:
        """``steps_per_epoch`` optimiser steps; returns their mean loss."""
        model, n_templates = self.model, self.tokens.shape[1]
        model.train()
        losses = []
        for _ in range(self.steps_per_epoch):
            for group in self.opt.param_groups:
                group["lr"] = learning_rate(self.step, self.total, self.settings.peak_lr, self.total // 10)
            pick = self.train_idx[next(self.batches).numpy()]
            chosen = (torch.randperm(n_templates, generator=self.gen)[: self.per_step] if self.per_step < n_templates
                      else torch.arange(n_templates))
            with self.autocast():  # the towers in bf16 on a GPU; the head and the loss below in float32
                img = model.encode_image(_pixels(self.clip, self.data.images, pick))
                text = _class_text(model, self.tokens[:, chosen.to(self.device)])
            logits = _scale(model) * F.normalize(img.float(), dim=-1) @ text.T
            loss = F.cross_entropy(logits, self.labels[torch.from_numpy(pick)].to(self.device))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
            self.step += 1
        return float(np.mean(losses))

    @torch.no_grad()
    def evaluate(self, idx: np.ndarray, metric: str) -> tuple[float, float]:
        """(score in percent, mean cross-entropy) of the model on the images ``idx`` of the training data, each class
        embedded from all its templates."""
        model, batch = self.model, self.settings.batch_size
        model.eval()
        with self.autocast():
            text = _class_text(model, self.tokens)
            images = [model.encode_image(_pixels(self.clip, self.data.images, idx[s : s + batch]))
                      for s in range(0, len(idx), batch)]
        cos = torch.cat([F.normalize(img.float(), dim=-1) @ text.T for img in images])
        labels = self.data.labels[idx]
        loss = float(F.cross_entropy(_scale(model) * cos, torch.from_numpy(labels).to(cos.device)))
        score = task.score(metric, metric_labels(metric, labels, self.tokens.shape[0]), cos.cpu().numpy())
        return float(score), loss


def select(clip: ClipEncoder, class_names: tuple[str, ...], templates: tuple[str, ...], metric: str, dataset: str,
           data: TrainingData, settings: FinetuneSettings, progress: bool = False) -> Selection:
    """Fine-tune a copy of ``clip`` on ``data`` and return it at the epoch that scores best on the validation split
    carved from ``data``; ``clip`` itself is left as it was. Only training images come in here."""
    from tqdm import tqdm

    train_idx, val_idx = carve_validation(data.labels, settings.val_fraction, settings.seed, dataset)
    with _repeatable(clip.device, settings.threads):
        run = _Trainer(clip, class_names, templates, data, train_idx, settings)
        log.info("fine-tuning %s (%s) on %d images (%d validate), %d epoch(s) x %d step(s)", clip.ref, settings.mode,
                 len(train_idx), len(val_idx), settings.epochs, run.steps_per_epoch)
        score, loss = run.evaluate(val_idx, metric)
        curve: list[dict[str, Any]] = [{"epoch": 0, "steps": 0, "train_loss": None, "val_loss": loss,
                                        "val_score": score}]
        best: dict[str, Any] | None = None
        best_state: dict[str, torch.Tensor] = {}
        start = time.perf_counter()
        for epoch in tqdm(range(1, settings.epochs + 1), desc="finetune", disable=not progress, leave=False):
            train_loss = run.epoch()
            score, loss = run.evaluate(val_idx, metric)
            entry = {"epoch": epoch, "steps": run.step, "train_loss": train_loss, "val_loss": loss, "val_score": score}
            curve.append(entry)
            log.info("epoch %d: train loss %.4f, validation %s %.2f (loss %.4f)", epoch, train_loss, metric, score,
                     loss)
            if best is None or _better(entry, best):
                best, best_state = entry, _snapshot(run.model)
        seconds = time.perf_counter() - start
        assert best is not None  # settings.epochs >= 1
        model = run.model
        _restore(model, best_state)
        if settings.mode == "lora":
            _merge_adapters(model)
        model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    log.info("chose epoch %d (validation %s %.2f)", best["epoch"], metric, best["val_score"])
    encoder = ClipEncoder(f"{clip.ref}+finetune", f"{clip.slug}-ft", clip.is_tiny, model, clip.preprocess,
                          clip.tokenizer, clip.device)
    trainable = sum(p.numel() for p in best_state.values())
    return Selection(encoder, int(best["epoch"]), curve, run.step, seconds, len(train_idx), len(val_idx), trainable)
