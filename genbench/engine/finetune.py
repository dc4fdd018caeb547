"""`genbench finetune`: fine-tune CLIP on one collection and score it on the real test split, in one Ray task.

:func:`finetune_collection` is the run in this process (what tests call): :func:`genbench.finetune.run.finetune`
with the test split opened through the same size and label check `genbench score` applies, after the epoch is chosen.
:func:`finetune_on_ray` runs that same function as one Ray task, given a GPU when the cluster has one (CPU otherwise).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from genbench import validate
from genbench.errors import GenbenchError
from genbench.finetune.run import open_collection
from genbench.finetune.settings import FinetuneSettings

log = logging.getLogger(__name__)


def finetune_collection(collection: str, clip_ref: str | None = None, settings: FinetuneSettings | None = None, *,
                        accept_test_subset: bool = False, data_root: str | None = None,
                        **kwargs: Any) -> dict[str, Any]:
    """Fine-tune ``clip_ref`` (default: the CLIP the collection's manifest names) on ``collection`` in this process;
    ``kwargs`` as :func:`genbench.finetune.run.finetune` takes them (shots, cache_dir, storage_options, device,
    progress). Returns the run's JSON record."""
    from genbench.finetune.run import finetune

    def open_test(spec: Any) -> Any:
        from genbench.catalog.loaders import load_split
        from genbench.engine.testsplit import check_split_size

        split = load_split(spec, "test", data_root)
        check_split_size(spec, split, accept_test_subset, "--accept-test-subset")
        return split

    return finetune(collection, clip_ref, settings, open_test=open_test, data_root=data_root, **kwargs)


def _task(kwargs: dict[str, Any], num_cpus: float) -> dict[str, Any]:
    """The Ray task's body: quiet model loading, training threads = the CPUs Ray gave it (unless the settings name a
    count), then the in-process run."""
    from genbench.sources.resources import quiet_model_loading

    logging.basicConfig(level=logging.WARNING)
    quiet_model_loading()
    if kwargs.get("settings") is None or kwargs["settings"].threads is None:
        import dataclasses

        kwargs = {**kwargs, "settings": dataclasses.replace(kwargs.get("settings") or FinetuneSettings(),
                                                            threads=max(1, int(num_cpus)))}
    return finetune_collection(**kwargs)


def finetune_on_ray(collection: str, clip_ref: str | None = None, settings: FinetuneSettings | None = None, *,
                    address: str | None = None, num_cpus: float = 1.0, num_gpus: float | None = None,
                    **kwargs: Any) -> dict[str, Any]:
    """:func:`finetune_collection` as one Ray task on the cluster at ``address`` (None: ``RAY_ADDRESS``, else an
    embedded local one) with ``num_cpus`` CPUs and ``num_gpus`` GPUs (None: 1 when the cluster has a GPU, else 0).
    The collection and CLIP reference are checked here first, so a wrong path fails before any task starts; a
    genbench error raised in the task is raised here as itself."""
    import ray

    from genbench.engine.dispatch import init_ray

    validate.number(num_cpus, "--num-cpus", 0.0, 1024.0, lo_open=True)
    if num_gpus is not None:
        validate.number(num_gpus, "--num-gpus", 0.0, 64.0)
    open_collection(collection, clip_ref, kwargs.get("shots"), kwargs.get("storage_options"))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    resources = init_ray(address)
    gpus = num_gpus if num_gpus is not None else _gpus(resources)
    log.info("fine-tuning in a Ray task (%g CPU, %g GPU)", num_cpus, gpus)
    remote = ray.remote(num_cpus=num_cpus, num_gpus=gpus, max_retries=0)(_task)
    return _get(remote.remote({"collection": collection, "clip_ref": clip_ref, "settings": settings, **kwargs},
                              num_cpus))


def _gpus(resources: dict[str, Any]) -> float:
    """One GPU per fine-tuning task when the cluster has any."""
    return 1.0 if resources.get("GPU", 0) >= 1 else 0.0


def _get(ref: Any) -> dict[str, Any]:
    """A task's record; a genbench error raised in the task is raised here as itself (exit 2 for bad input)."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, GenbenchError):
            raise cause from None
        raise


def finetune_records(cfg: Any, records: list[dict[str, Any]]) -> None:
    """A run's ``finetune:`` block: one Ray task per (collection, shot count) it names, all in flight together (each
    with a GPU when the cluster has one); each record gets ``scores.finetune`` and the run's details under
    ``finetune`` (chosen epoch, validation curve, settings). Called once the worker pool is gone, so the tasks get
    the devices it held."""
    import ray

    plan = cfg.finetune
    wanted = [r for r in records if plan.wants(str(r.get("source")), int(r["shots"]))]
    if not wanted:
        return
    gpus = _gpus(ray.cluster_resources())
    cpus = float(cfg.engine.cpus_per_worker)
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=1)(_task)
    log.info("fine-tuning CLIP on %d collection prefix(es) (%g CPU, %g GPU each)", len(wanted), cpus, gpus)
    refs = [remote.remote({"collection": r["collection"], "clip_ref": cfg.clip, "settings": plan.settings,
                           "shots": int(r["shots"]), "data_root": cfg.data_root, "cache_dir": cfg.cache_dir,
                           "storage_options": dict(cfg.storage_options),
                           "accept_test_subset": cfg.accept_test_subset,
                           # the record has the base model's zero-shot score already: no second pass over the test split
                           "base_zeroshot": False}, cpus) for r in wanted]
    for rec, ref in zip(wanted, refs):
        got = _get(ref)
        rec["scores"]["finetune"] = got["scores"]["finetune"]
        rec["finetune"] = {k: got[k] for k in ("chosen_epoch", "validation", "settings", "n_train", "n_val", "steps",
                                               "train_seconds", "device")}
