"""Toy models trained here, offline, on the digits *train* split: a CLIP (``clip: toy``) and a text-to-image diffusion
pipeline (``generator: toy``) with real signal, so that a laptop run measures what GenBench measures.

Both train on first use (seeded, deterministic for one machine and thread count), are written once under the model
cache under a file lock, and load through the same code as real weights: ``open_clip.create_model_and_transforms``
on a ``local-dir:`` and ``AutoPipelineForText2Image.from_pretrained(dir)``. ``genbench toy train`` trains them ahead.
"""

from genbench.models.toy.store import TOY_MODELS, toy_model_dir

__all__ = ["TOY_MODELS", "toy_model_dir"]
