"""Adapt a generator to a dataset class by class: train what is not done, commit each class, skip the rest."""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from typing import Any

from genbench.adapt.artefacts import ALL, ClassArtefacts
from genbench.adapt.lora import LoRASettings, train_lora
from genbench.adapt.references import original_shots
from genbench.adapt.textual_inversion import TISettings, class_token, train_token
from genbench.catalog import get_dataset
from genbench.catalog.loaders import load_split
from genbench.errors import UsageError
from genbench.seeds import sample_seed

log = logging.getLogger(__name__)

METHODS = ("ti", "lora")
SCOPES = ("class", "dataset")


def adapt_dataset(pipe: Any, base: str, dataset: str, method: str, settings: TISettings | LoRASettings, shots: int,
                  run_seed: int, root: str, classes: list[int] | None = None,
                  data_root: str | None = None, scope: str = "class") -> ClassArtefacts:
    """Train ``method`` (``ti``: one token per class; ``lora``: one adapter per class, or with ``scope="dataset"``
    one adapter for all classes) on each class's first ``shots`` original images; classes (or the dataset) already
    committed under ``root`` are skipped. Returns the artefact store."""
    if method not in METHODS:
        raise UsageError("adapt.method", method, METHODS)
    if scope not in SCOPES or (scope == "dataset" and method != "lora"):
        raise UsageError("adapt.scope", scope, "'class', or 'dataset' with method lora")
    if not 1 <= int(shots) <= 10_000:
        raise UsageError("adapt.shots", shots, "an integer from 1 to 10000")
    spec = get_dataset(dataset)
    store = ClassArtefacts(root, method, {"base": base, "dataset": dataset, "shots": int(shots), "scope": scope,
                                          "run_seed": int(run_seed), "settings": asdict(settings)})
    templates = tuple(spec.templates) + (spec.simple_template,)
    split = load_split(spec, "train", data_root)
    if scope == "dataset":
        _adapt_all(pipe, store, split, spec.classes, settings, int(shots), run_seed, templates)
        return store
    for cls in classes if classes is not None else range(spec.num_classes):
        if store.done(cls):
            continue
        name = spec.classes[cls]
        images = original_shots(split, spec.classes, cls, int(shots), run_seed)
        seed = sample_seed(run_seed, dataset, cls, 0, purpose=f"adapt-{method}")
        scratch = store.scratch()
        try:
            if method == "ti":
                from safetensors.torch import save_file

                token = class_token(dataset, name)
                vector = train_token(pipe, images, token, name, templates, settings, seed)
                save_file({token: vector}, str(scratch / "learned_embeds.safetensors"))
                store.commit(cls, scratch / "learned_embeds.safetensors", {"token": token, "images": len(images)})
            else:
                made = train_lora(pipe, images, [[t.format(name) for t in templates]] * len(images), settings, seed,
                                  scratch, adapter_name=f"c{cls}")
                store.commit(cls, made, {"images": len(images)})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        log.info("adapted %s class %s (%s)", dataset, name, method)
    return store


def _adapt_all(pipe: Any, store: ClassArtefacts, split: Any, class_names: tuple[str, ...], settings: LoRASettings,
               shots: int, run_seed: int, templates: tuple[str, ...]) -> None:
    """One LoRA on every class's shots, each image captioned with its own class's templates."""
    if store.done(ALL):
        return
    dataset = split.dataset
    images, captions = [], []
    for cls, name in enumerate(class_names):
        shots_of = original_shots(split, class_names, cls, shots, run_seed)
        images += shots_of
        captions += [[t.format(name) for t in templates]] * len(shots_of)
    scratch = store.scratch()
    try:
        made = train_lora(pipe, images, captions, settings, sample_seed(run_seed, dataset, 0, 0, purpose="adapt-lora-all"),
                          scratch, adapter_name="dataset")
        store.commit(ALL, made, {"images": len(images)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("adapted %s (one LoRA for all classes)", dataset)


def apply(pipe: Any, store: ClassArtefacts, base: str, dataset: str, cls: int) -> str:
    """Make the pipeline generate class ``cls`` with its artefact; returns the text that names the class in prompts
    (the learned token for TI, the class name for LoRA, whose adapter is switched in without reloading the base)."""
    method = store.identity["method"]
    unit = ALL if store.identity.get("scope") == "dataset" else cls
    weights = store.weights(unit, base, dataset)
    name = get_dataset(dataset).classes[cls]
    if method == "ti":
        token = class_token(dataset, name)
        if token not in pipe.tokenizer.get_vocab():
            pipe.load_textual_inversion(str(weights), token=token)
        return token
    adapter = "dataset" if unit == ALL else f"c{cls}"
    if adapter not in (pipe.get_list_adapters().get("unet", []) if hasattr(pipe, "get_list_adapters") else []):
        pipe.load_lora_weights(str(weights.parent), weight_name=weights.name, adapter_name=adapter)
    pipe.set_adapters([adapter])
    return name
