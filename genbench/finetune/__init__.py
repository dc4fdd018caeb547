"""CLIP fine-tuning as a score: train CLIP (LoRA on both towers, or every weight) on a collection, optionally mixed
with the real k-shot data, choose the epoch on a validation split carved from those training images, then score the
chosen model on the real test split in the dataset's metric, beside the base model's zero-shot score.

- :mod:`~genbench.finetune.settings`: :class:`FinetuneSettings`, every field checked (exit 2 naming it).
- :mod:`~genbench.finetune.train`: training images, the validation carve, training and checkpoint selection
  (:func:`~genbench.finetune.train.select` is handed no test data).
- :mod:`~genbench.finetune.score`: zero-shot scoring on the real test split, opened once the choice is made.
- :mod:`~genbench.finetune.run`: one run end to end, in this process, and its JSON record.

All Ray-free; :mod:`genbench.engine.finetune` runs a run as one Ray task. Importing this package loads no torch.
"""

from genbench.finetune.settings import FinetuneSettings

__all__ = ["FinetuneSettings"]
