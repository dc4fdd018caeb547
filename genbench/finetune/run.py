"""One fine-tuning run, end to end and in this process: open the collection, load its training images (and the real
k-shot originals when mixed in), choose the checkpoint on the validation split carved from them, and only then open
the test split to score the base and the fine-tuned model. :mod:`genbench.engine.finetune` runs this as a Ray task.

Torch, open_clip and peft are imported when a run starts, not with this module: the checks of
:func:`open_collection` and :func:`check_test_present` are cheap enough for a driver to run before any task.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from genbench import validate
from genbench.catalog import get_dataset
from genbench.errors import DatasetNotFound, UsageError
from genbench.finetune.settings import FinetuneSettings
from genbench.shards import manifest as mf
from genbench.shards.store import Store

log = logging.getLogger(__name__)

RECORD_KIND = "genbench-finetune"


@dataclass
class OpenedCollection:
    """A collection checked for fine-tuning: its store and manifest, the dataset's spec, the CLIP reference to
    fine-tune, and the shards within the ``shots`` prefix."""

    store: Store
    manifest: dict[str, Any]
    spec: Any
    clip_ref: str
    shard_names: list[str]


def open_collection(uri: str, clip_ref: str | None = None, shots: int | None = None,
                    storage_options: dict | None = None) -> OpenedCollection:
    """Check ``uri`` (a collection with a manifest naming a catalog dataset and its shards), ``shots`` and the CLIP
    reference (default: the one the manifest names); reads the manifest only."""
    from genbench.models import refs

    if shots is not None:
        validate.integer(shots, "--shots", 1, 1_000_000)
    store = Store(uri, storage_options)
    man = mf.read_manifest(store, "--collection")
    dataset = man["spec"].get("dataset")
    if not isinstance(dataset, str):
        raise UsageError("--collection", uri, "a collection whose manifest names its dataset")
    spec = get_dataset(dataset)
    if clip_ref is None:
        clip_ref = man["spec"].get("clip")
        if not isinstance(clip_ref, str) or not clip_ref or clip_ref == "none":
            raise UsageError("--clip", None, "a CLIP reference (the collection's manifest names none): "
                             + refs.ALLOWED_CLIP)
    refs.check_clip(clip_ref)
    limit = None if shots is None else shots * spec.num_classes
    entries = [e for e in mf.shard_entries(man) if limit is None or e["slot_start"] < limit]
    if not entries:
        raise UsageError("--collection", uri, "a collection with at least one shard")
    return OpenedCollection(store, man, spec, clip_ref, [str(e["tar"])[: -len(".tar")] for e in entries])


def check_test_present(spec: Any, data_root: str | None) -> None:
    """Fail before training when the test split's files are absent (looked for, not opened: no test data is read)."""
    from genbench.catalog.loaders.ondisk import describe_layouts, find_layout, resolve_data_root

    if find_layout(spec, data_root) is None:
        root = resolve_data_root(data_root)
        raise DatasetNotFound(spec.name, f"{root / spec.name} (split 'test')", describe_layouts(spec, root),
                              spec.origin)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block (None: left as they are)."""
    import torch

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def finetune(
    collection: str,
    clip_ref: str | None = None,
    settings: FinetuneSettings | None = None,
    *,
    open_test: Callable[[Any], Any] | None = None,
    shots: int | None = None,
    data_root: str | None = None,
    cache_dir: str | None = None,
    storage_options: dict | None = None,
    device: str | None = None,
    progress: bool = False,
    base_zeroshot: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``clip_ref`` on ``collection`` (its first ``shots`` shots if given) and score it; returns the JSON
    record (:func:`finetune_record`). ``open_test(spec)`` opens the test split once the epoch is chosen (default:
    :func:`genbench.catalog.loaders.load_split` as it is). ``base_zeroshot``: also score the base model (the record's
    ``scores.zeroshot`` and ``gain``); a run whose records hold it already passes False."""
    from genbench.catalog.loaders import load_split
    from genbench.finetune import score, train
    from genbench.models.clip import load_clip

    settings = settings or FinetuneSettings()
    start = time.perf_counter()
    coll = open_collection(collection, clip_ref, shots, storage_options)
    spec = coll.spec
    check_test_present(spec, data_root)
    clip = load_clip(coll.clip_ref, device=device, cache_dir=cache_dir)
    data = train.collection_data(coll.store, coll.shard_names, spec.num_classes, shots)
    if settings.mix_original:
        if coll.manifest["spec"].get("source") == "original":
            log.warning("%s is original data already: mixing in originals adds the same images again", collection)
        run_seed = int(coll.manifest["spec"].get("run_seed") or 0)
        data = train.with_originals(data, load_split(spec, "train", data_root), spec.classes, settings.mix_original,
                                    run_seed)
    if len(data) == 0:
        raise UsageError("--collection", collection, "a collection with images (within --shots)")
    selection = train.select(clip, spec.classes, spec.templates, spec.metric, spec.name, data, settings, progress)
    # Only now, with the checkpoint chosen, is the test split opened.
    opener = open_test or (lambda s: load_split(s, "test", data_root))
    with _torch_threads(settings.threads):
        encoders = {"zeroshot": clip} if base_zeroshot else {}  # a run's record has it already
        scores, n_test = score.score_on_test(spec, {**encoders, "finetune": selection.encoder}, lambda: opener(spec))
    return finetune_record(coll, collection=collection, shots=shots, settings=settings, selection=selection,
                           data=data, scores=scores, n_test=n_test, device=str(clip.device),
                           wall_seconds=time.perf_counter() - start)


def finetune_record(coll: OpenedCollection, *, collection: str, shots: int | None, settings: FinetuneSettings,
                    selection: Any, data: Any, scores: dict[str, float], n_test: int, device: str,
                    wall_seconds: float) -> dict[str, Any]:
    """The JSON record of one run: test scores (percent, the dataset's metric) of the base model's zero-shot and of
    the fine-tuned model, the chosen epoch and the validation curve it was chosen on, the settings, the sizes of the
    training/validation/test sets, timings, and the untrained/toy-models notices other records carry."""
    import importlib.metadata as md

    from genbench.models.refs import clip_untrained, toy_models
    from genbench.report.records import notice, toy_notice

    spec, man, clip_ref = coll.spec, coll.manifest, coll.clip_ref
    made_by = man.get("untrained_models")
    made_by = made_by if isinstance(made_by, list) else []
    untrained = sorted(set(made_by) | ({f"CLIP {clip_ref}"} if clip_untrained(clip_ref) else set()))
    options = man["spec"].get("options") or {}
    record: dict[str, Any] = {
        "kind": RECORD_KIND,
        "dataset": spec.name,
        "metric": spec.metric,
        "collection": collection,
        "source": man["spec"].get("source"),
        "variant": man["spec"].get("variant"),
        "shots": shots if shots is not None else man["spec"].get("shots"),
        "clip": clip_ref,
        "scores": {k: float(v) for k, v in scores.items()},
        "gain": float(scores["finetune"] - scores["zeroshot"]) if "zeroshot" in scores else None,
        "chosen_epoch": selection.chosen_epoch,
        "validation": selection.curve,
        "settings": settings.to_json(),
        "n_collection": data.n_collection,
        "n_original": data.n_original,
        "n_train": selection.n_train,
        "n_val": selection.n_val,
        "n_test": int(n_test),
        "trainable_parameters": selection.trainable_parameters,
        "steps": selection.steps,
        "train_seconds": selection.train_seconds,
        "steps_per_second": selection.steps / selection.train_seconds if selection.train_seconds > 0 else None,
        "wall_seconds": wall_seconds,
        "device": device,
        "untrained_models": bool(untrained),
        "untrained": untrained,
        "toy_models": toy_models([options.get("generator")], clip_ref),
        "software": {**mf.software_versions(), "peft": md.version("peft")},
    }
    record["notice"] = " ".join(n for n in (notice([record]), toy_notice([record])) if n) or None
    return record
