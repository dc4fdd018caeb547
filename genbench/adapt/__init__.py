"""Knowledge injection: per-class artefacts trained on a target dataset's few real shots before generation.

Ray-free trainers (:mod:`.textual_inversion`, :mod:`.lora`) take a loaded diffusers pipeline and reference images and
return tensors; :mod:`.artefacts` commits each class's result atomically (safetensors, then a JSON record last), so a
rerun skips finished classes and an interrupted class is redone from scratch.
"""
