"""The settings of one fine-tuning run, each checked where it is made: a bad value raises a one-line
:class:`~genbench.errors.UsageError` naming ``finetune.<field>`` (exit code 2 on the command line)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from genbench import validate
from genbench.errors import UsageError

MODES = ("lora", "full")
# A learning rate that suits each mode when none is given (FLYP fine-tunes whole CLIP models at 1e-5; LoRA adapters
# start at zero and take larger steps). Toy models, trained from scratch here, want more: tests and benchmarks say so.
DEFAULT_LR = {"lora": 1e-4, "full": 1e-5}


@dataclass(frozen=True)
class FinetuneSettings:
    """How CLIP is fine-tuned on a collection and how its checkpoint is chosen.

    ``mode``: ``lora`` (adapters of rank ``rank`` and scale ``alpha / rank`` on the attention and MLP linear layers of
    both towers; the base weights stay frozen) or ``full`` (every weight is trained). ``lr``: peak AdamW learning rate
    (None: :data:`DEFAULT_LR` of the mode), reached after a linear warm-up over the first tenth of the steps, then
    cosine-decayed to zero. ``epochs``: how many times the checkpoint is evaluated on the validation split;
    ``steps_per_epoch``: optimizer steps between two evaluations (None: one pass over the training images).
    ``val_fraction``: the share of each class's training images held out for choosing the epoch (the real test split
    is never used for that). ``mix_original``: the first K real training images per class (the k-shot original data,
    in the original source's own order) added to the collection's images; 0 adds none. ``templates_per_step``: how
    many of the dataset's templates make each class's text embedding in a training step (a fresh seeded draw each step;
    validation and test use all of them). ``threads``: torch's CPU threads while training and scoring (None: as set).
    """

    mode: str = "lora"
    rank: int = 16
    alpha: float = 32.0
    lr: float | None = None
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 32
    val_fraction: float = 0.2
    mix_original: int = 0
    weight_decay: float = 0.1
    templates_per_step: int = 4
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        w = "finetune."
        validate.choice(self.mode, w + "mode", MODES)
        validate.integer(self.rank, w + "rank", 1, 256)
        validate.number(self.alpha, w + "alpha", 0.0, 1024.0, lo_open=True)
        if self.lr is not None:
            validate.number(self.lr, w + "lr", 0.0, 1.0, lo_open=True)
        validate.integer(self.epochs, w + "epochs", 1, 1000)
        if self.steps_per_epoch is not None:
            validate.integer(self.steps_per_epoch, w + "steps_per_epoch", 1, 1_000_000)
        validate.integer(self.batch_size, w + "batch_size", 1, 4096)
        validate.number(self.val_fraction, w + "val_fraction", 0.0, 0.5, lo_open=True)
        validate.integer(self.mix_original, w + "mix_original", 0, 100_000)
        validate.number(self.weight_decay, w + "weight_decay", 0.0, 1.0)
        validate.integer(self.templates_per_step, w + "templates_per_step", 1, 1000)
        validate.integer(self.seed, w + "seed", 0, 2**32 - 1)
        if self.threads is not None:
            validate.integer(self.threads, w + "threads", 1, 1024)

    @property
    def peak_lr(self) -> float:
        """The learning rate in use: ``lr``, or the mode's default."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.mode]

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON object, with the learning rate actually used."""
        return {**dataclasses.asdict(self), "lr": self.peak_lr}

    @classmethod
    def from_options(cls, **options: Any) -> "FinetuneSettings":
        """Settings from keyword options where None means "the default" (what the command line passes)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            validate.keys({k: options[k] for k in unknown}, names, "finetune.")
        return cls(**{k: v for k, v in options.items() if v is not None})


@dataclass(frozen=True)
class FinetunePlan:
    """A run's ``finetune:`` block: fine-tune CLIP on each collection of the listed ``sources`` kinds (all when empty)
    at the listed ``shots`` (every scored shot count when empty), with ``settings``; the record of each gets the
    fine-tuned test score as ``scores.finetune`` (the paper's Fig. 10)."""

    settings: FinetuneSettings = FinetuneSettings()
    shots: tuple[int, ...] = ()
    sources: tuple[str, ...] = ()

    def wants(self, source: str, shots: int) -> bool:
        return (not self.sources or source in self.sources) and (not self.shots or shots in self.shots)


def parse_finetune(data: Any, kinds: tuple[str, ...]) -> FinetunePlan | None:
    """The ``finetune:`` block of a config (``kinds``: the source kinds a config may name)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise UsageError("finetune", data, "a mapping of fine-tuning settings (or nothing)")
    names = [f.name for f in dataclasses.fields(FinetuneSettings) if f.name != "threads"]
    validate.keys(data, names + ["shots", "sources"], "finetune.")
    shots = validate.shots(data["shots"], "finetune.shots") if "shots" in data else ()
    sources = data.get("sources", [])
    sources = [sources] if isinstance(sources, str) else sources
    if not isinstance(sources, list):
        raise UsageError("finetune.sources", sources, "a list of source kinds: " + ", ".join(kinds))
    for i, kind in enumerate(sources):
        validate.choice(kind, f"finetune.sources[{i}]", kinds)
    settings = FinetuneSettings.from_options(**{k: v for k, v in data.items() if k not in ("shots", "sources")})
    return FinetunePlan(settings, tuple(shots), tuple(dict.fromkeys(sources)))
