"""Adapt a generator to a dataset class by class: train what is not done, commit each class, skip the rest.

:func:`train_unit` trains and commits one unit (a class, or :data:`ALL` for one LoRA over every class): it is what a
worker runs for one task of the engine's adaptation stage, and what :func:`adapt_dataset` loops over in-process.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from dataclasses import asdict
from typing import Any, Callable

from PIL import Image

from genbench.adapt.artefacts import ALL, ClassArtefacts
from genbench.adapt.lora import LoRASettings, train_lora
from genbench.adapt.filtering import NoReferences, small_references
from genbench.adapt.references import original_shots
from genbench.adapt.spec import METHODS, SCOPES
from genbench.adapt.textual_inversion import TISettings, class_token, train_token
from genbench.catalog import get_dataset
from genbench.catalog.loaders import load_split
from genbench.errors import UsageError
from genbench.seeds import sample_seed

log = logging.getLogger(__name__)

References = Callable[[int], list[Image.Image]]


def _templates(spec: Any) -> tuple[str, ...]:
    return tuple(spec.templates) + (spec.simple_template,)


def train_unit(pipe: Any, store: ClassArtefacts, dataset: str, method: str, settings: TISettings | LoRASettings,
               unit: int, references: References, run_seed: int, on_empty: str = "fail",
               notes: dict[str, Any] | None = None, min_side: int = 32) -> dict[str, Any]:
    """Train ``method`` for class ``unit`` (or every class, ``unit == ALL``: one LoRA) on ``references(cls)`` and
    commit it; returns the committed record's facts. A class with no reference is committed as plain
    (``on_empty="plain"``: generated without adaptation) or refused naming it (``"fail"``). ``notes`` (filled by
    ``references``, e.g. the filter's counts) go into the record, with how many references are below ``min_side``
    pixels (upsampled for training; the paper's textual inversion failed on CIFAR-10's 32 px)."""
    spec = get_dataset(dataset)
    classes = range(spec.num_classes) if unit == ALL else [unit]
    t0 = time.perf_counter()
    images, captions, empty = [], [], []
    for cls in classes:
        got = references(cls)
        if not got:
            empty.append(spec.classes[cls])
        images += got
        captions += [[t.format(spec.classes[cls]) for t in _templates(spec)]] * len(got)
    facts: dict[str, Any] = {**(notes or {}), "images": len(images), "small_references": small_references(images, min_side),
                             "pid": os.getpid()}
    if not images or (empty and (unit != ALL or on_empty != "plain")):
        if on_empty != "plain":
            seen = facts.get("filter", {}).get(empty[0])
            raise NoReferences(dataset, empty[0], f"0 of {seen['candidates']} retrieved candidate(s) passed the filter"
                               if seen else "the class has no reference image")
        what = f"{dataset} class {empty[0]!r}" if unit != ALL else f"every class of {dataset}"
        log.warning("adaptation: %s has no reference image; generated without adaptation (on_empty: plain)", what)
        store.commit_plain(unit, "no reference image", facts)
        return {**facts, "plain": True}
    if empty:
        log.warning("adaptation: %d class(es) of %s have no reference image: %s", len(empty), dataset,
                    ", ".join(empty[:10]))
        facts["classes_without_references"] = empty
    seed = (sample_seed(run_seed, dataset, 0, 0, purpose="adapt-lora-all") if unit == ALL
            else sample_seed(run_seed, dataset, unit, 0, purpose=f"adapt-{method}"))
    scratch = store.scratch()
    try:
        if method == "ti":
            from safetensors.torch import save_file

            name = spec.classes[unit]
            token = class_token(dataset, name)
            vector = train_token(pipe, images, token, name, _templates(spec), settings, seed)
            save_file({token: vector}, str(scratch / "learned_embeds.safetensors"))
            made, facts["token"] = scratch / "learned_embeds.safetensors", token
        else:
            made = train_lora(pipe, images, captions, settings, seed, scratch,
                              adapter_name="dataset" if unit == ALL else f"c{unit}")
        facts["seconds"] = round(time.perf_counter() - t0, 3)
        facts["steps_per_s"] = round(int(settings.steps) / max(facts["seconds"], 1e-9), 3)
        store.commit(unit, made, facts)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("adapted %s %s (%s, %d images)", dataset, "all classes" if unit == ALL else spec.classes[unit], method,
             len(images))
    return facts


def adapt_dataset(pipe: Any, base: str, dataset: str, method: str, settings: TISettings | LoRASettings, shots: int,
                  run_seed: int, root: str, classes: list[int] | None = None,
                  data_root: str | None = None, scope: str = "class") -> ClassArtefacts:
    """Train ``method`` (``ti``: one token per class; ``lora``: one adapter per class, or with ``scope="dataset"``
    one adapter for all classes) on each class's first ``shots`` original images; classes (or the dataset) already
    committed under ``root`` are skipped. Returns the artefact store. (The engine runs the same units on its workers.)"""
    if method not in METHODS:
        raise UsageError("adapt.method", method, METHODS)
    if scope not in SCOPES or (scope == "dataset" and method != "lora"):
        raise UsageError("adapt.scope", scope, "'class', or 'dataset' with method lora")
    if not 1 <= int(shots) <= 10_000:
        raise UsageError("adapt.shots", shots, "an integer from 1 to 10000")
    spec = get_dataset(dataset)
    store = ClassArtefacts(root, method, {"base": base, "dataset": dataset, "shots": int(shots), "scope": scope,
                                          "run_seed": int(run_seed), "settings": asdict(settings)})
    split = load_split(spec, "train", data_root)

    def references(cls: int) -> list[Image.Image]:
        return original_shots(split, spec.classes, cls, int(shots), run_seed)

    units = [ALL] if scope == "dataset" else (classes if classes is not None else range(spec.num_classes))
    for unit in units:
        if not store.done(unit):
            train_unit(pipe, store, dataset, method, settings, unit, references, run_seed)
    return store


def apply(pipe: Any, store: ClassArtefacts, base: str, dataset: str, cls: int) -> str:
    """Make the pipeline generate class ``cls`` with its artefact; returns the text that names the class in prompts
    (the learned token for TI, the class name for LoRA, whose adapter is switched in without reloading the base).
    A class committed as plain (no reference image) is generated by the base model under its name."""
    method = store.identity["method"]
    unit = ALL if store.identity.get("scope") == "dataset" else cls
    name = get_dataset(dataset).classes[cls]
    if store.plain(unit):
        if method == "lora" and hasattr(pipe, "disable_lora"):
            pipe.disable_lora()
        return name
    weights = store.weights(unit, base, dataset)
    if method == "ti":
        token = class_token(dataset, name)
        if token not in pipe.tokenizer.get_vocab():
            pipe.load_textual_inversion(str(weights), token=token)
        return token
    # Named after the store (whose key holds the dataset): one entry's pipeline serves every dataset of the run.
    adapter = f"{store.dir.name.replace('-', '_')}_{'dataset' if unit == ALL else f'c{cls}'}"
    recent = _recent.setdefault(id(pipe), [])
    loaded = set(pipe.get_list_adapters().get("unet", [])) if hasattr(pipe, "get_list_adapters") else set()
    recent[:] = [a for a in recent if a in loaded and a != adapter]
    if adapter not in loaded:
        while len(recent) >= MAX_LOADED_ADAPTERS:  # a worker visits many classes: evict the least recently used
            pipe.delete_adapters(recent.pop(0))
        with warnings.catch_warnings():  # several adapters in one model is the point here, not a mistake
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            pipe.load_lora_weights(str(weights.parent), weight_name=weights.name, adapter_name=adapter)
    recent.append(adapter)
    pipe.enable_lora()
    pipe.set_adapters([adapter])
    return name


# An SD 2.1 rank-16 adapter (UNet attention and text encoder) is 6.3 M parameters, 24.2 MB in float32
# (benchmarks/adapt.py --sd21): 64 loaded hold about 1.5 GB in float32, half that in bf16.
MAX_LOADED_ADAPTERS = 64
_recent: dict[int, list[str]] = {}  # per pipeline: its loaded adapters, least recently used first
