"""A generated source's ``adapt:`` block at each step of a run (Ray-free; the engine dispatches the training units).

- **link** (planner): the adaptation's identity, ``<method>-<hash>`` of its settings, the base generator (with its
  recipe) and, for retrieved references, the settings of the retrieved collection it reads (built first), becomes the
  ``adapt_id`` of the generated collection: part of its identity (beside the dataset) and its name.
- **train** (worker, one task per class or one per dataset): :func:`train_job_unit` trains a unit on a float32 copy
  of the generator and commits it under ``<shards root>/<dataset>/adapt/`` (:class:`ClassArtefacts`).
- **produce** (worker): :func:`class_namer` switches the pipeline to a class's artefact (the learned token, or its
  LoRA adapter) before that class's images are generated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from dataclasses import replace
from typing import Any, Callable

from PIL import Image

from genbench.adapt.artefacts import ALL, ClassArtefacts
from genbench.errors import UsageError
from genbench.sources.links import Upstream

log = logging.getLogger(__name__)

RETRIEVED_KIND = "retrieved"


def link_adapt(spec: Any, where: str, dataset: str, upstream: list[Upstream]) -> tuple[Any, tuple[str, ...]]:
    """``spec`` with its ``adapt_id`` (and, for retrieved references, the retrieved collection it reads) filled in,
    and the URIs it reads."""
    a = spec.adapt
    if a.method == "ti":
        from genbench.adapt.spec import check_tokens
        from genbench.catalog import get_dataset

        check_tokens(dataset, get_dataset(dataset).classes, f"{where}.adapt.method")
    # Not the dataset: the collection's identity has it already, and one entry's collections share one name across
    # datasets (the artefacts themselves are per dataset, artefact_store).
    ident: dict[str, Any] = {"adapt": a.identity(), "generator": spec.generator, "recipe": spec.generator_recipe}
    after: tuple[str, ...] = ()
    if a.references == "retrieved":
        chosen = _retrieved(a, f"{where}.adapt", dataset, upstream)
        if a.shots > chosen.shots:
            raise UsageError(f"{where}.adapt.shots", a.shots,
                             f"at most the {chosen.shots} shot(s) sources[{chosen.position}] retrieves for {dataset} "
                             "(the references are a class's first adapt.shots retrieved images)")
        ident["retrieved"] = {"variant": chosen.variant, "options": chosen.identity.get("options")}
        spec = replace(spec, adapt_from_uri=chosen.uri, adapt_from_name=chosen.variant)
        after = (chosen.uri,)
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
    return replace(spec, adapt_id=f"{a.method}-{digest}"), after


def _retrieved(a: Any, where: str, dataset: str, upstream: list[Upstream]) -> Upstream:
    pool = [u for u in upstream if u.kind == RETRIEVED_KIND]
    listed = ", ".join(f"{u.position} ({u.variant})" for u in pool)
    if not pool:
        raise UsageError(f"{where}.references", "retrieved",
                         f"references: retrieved only with a retrieved source for dataset {dataset} in 'sources'")
    if a.retrieved_from is None:
        if len(pool) > 1:
            raise UsageError(f"{where}.retrieved_from", None, f"the retrieved source of {dataset} to learn from: {listed}")
        return pool[0]
    found = [u for u in pool if a.retrieved_from in (u.position, u.variant)]
    if not found:
        raise UsageError(f"{where}.retrieved_from", a.retrieved_from, f"a retrieved source of {dataset}: {listed}")
    return found[0]


def artefact_root(job: Any) -> str:
    """``<shards root>/<dataset>/adapt``: beside the dataset's collections, where every worker can read it."""
    return posixpath.join(posixpath.dirname(posixpath.dirname(job.uri.rstrip("/"))), "adapt")


def artefact_store(job: Any) -> ClassArtefacts:
    a = job.spec.adapt
    return ClassArtefacts(artefact_root(job), a.method, {"base": job.spec.generator, "dataset": job.dataset,
                                                         "adapt": job.spec.adapt_id, "scope": a.scope,
                                                         "run_seed": int(job.run_seed)})


def units(job: Any) -> list[int]:
    """The training units of ``job``'s adaptation: every class, or :data:`ALL` (one LoRA for the dataset)."""
    return [ALL] if job.spec.adapt.scope == "dataset" else list(range(job.num_classes))


def _training_generator(job: Any, resources: Any) -> Any:
    """The generator trained on: a float32 copy of its own per adaptation (a bf16/fp16 generation pipeline cannot
    take optimizer steps, and one adaptation's added tokens must not reach another's checkpoints)."""
    spec = job.spec
    return resources.generator(spec.generator, "fp32", spec.scheduler, False, job.cache_dir,
                               instance=f"train-{spec.adapt_id}")


def _references(job: Any, resources: Any, notes: dict[str, Any]) -> Callable[[int], list[Image.Image]]:
    """``cls -> reference images``: the class's first ``adapt.shots`` originals, or its retrieved images that pass the
    filter (the filter's counts land in ``notes``)."""
    from genbench.adapt.references import MAX_READ_AT_ONCE, decoded, original_shots, retrieved_samples
    from genbench.catalog import get_dataset

    a, spec = job.spec.adapt, get_dataset(job.dataset)
    if a.references == "original":
        split = resources.split(job.dataset, "train", job.data_root)
        return lambda cls: original_shots(split, spec.classes, cls, a.shots, job.run_seed)
    uri, options = job.spec.adapt_from_uri, job.storage_options

    def of_class(cls: int) -> list[Any]:
        if job.num_classes * a.shots <= MAX_READ_AT_ONCE:  # every class's references, read once per worker
            every = resources.cached(("retrieved-references", uri, a.shots),
                                     lambda: retrieved_samples(uri, options, job.num_classes, a.shots))
            return every.get(cls, [])
        return retrieved_samples(uri, options, job.num_classes, a.shots, {cls}).get(cls, [])

    def retrieved(cls: int) -> list[Image.Image]:
        from genbench.adapt.filtering import filter_references

        candidates = decoded(of_class(cls))
        result = filter_references(candidates, spec.classes[cls], a.filter, _filter_models(a.filter, job, resources))
        notes.setdefault("filter", {})[spec.classes[cls]] = result.record()  # each candidate's caption/similarity
        return list(result.kept)

    return retrieved


def _filter_models(settings: Any, job: Any, resources: Any) -> Any:
    """The filter's models, loaded once per worker; the CLIP filter uses the run's CLIP model."""
    from genbench.adapt.filtering import FilterModels

    def make() -> Any:
        clip = None
        if settings.method == "clip":
            if not job.clip:
                raise UsageError("adapt.filter.method", "clip", "caption or none in a run without a CLIP model")
            clip = resources.clip(job.clip, job.cache_dir)
        return FilterModels(settings, clip=clip, device=resources.device, cache_dir=job.cache_dir)

    return resources.cached(("filter-models", settings), make)


def train_job_unit(job: Any, unit: int, resources: Any) -> dict[str, Any]:
    """Train and commit one unit of ``job``'s adaptation (a retried task whose unit another attempt finished returns
    that record); returns the record's facts."""
    from genbench.adapt.run import train_unit

    store = artefact_store(job)
    done = store.record(unit)
    if done is not None:
        return done
    a = job.spec.adapt
    notes: dict[str, Any] = {}
    pipe = _training_generator(job, resources).pipe
    return train_unit(pipe, store, job.dataset, a.method, a.settings(), unit, _references(job, resources, notes),
                      job.run_seed, a.on_empty, notes=notes, min_side=a.filter.min_side if a.filter else 32)


def training_only(key: tuple) -> bool:
    """Whether a worker's cached resource serves only adaptation training (its float32 training pipelines, the filter's
    models, the retrieved references read for it): dropped once the adaptation stage is over."""
    return (key[0] in ("filter-models", "retrieved-references")
            or (key[0] == "generator" and str(key[-1]).startswith("train-")))


def class_namer(job: Any, generator: Any) -> Callable[[int], str]:
    """``cls -> the text naming the class in prompts``, switching ``generator``'s pipeline to that class's artefact."""
    from genbench.adapt.run import apply

    store, pipe = artefact_store(job), generator.pipe  # never the null generator: GeneratedSpec.validate refuses it
    return lambda cls: apply(pipe, store, job.spec.generator, job.dataset, cls)


def summary(job: Any) -> dict[str, Any]:
    """What the manifest says of the adaptation: its id and store, each unit's weights digest or "plain", and the
    classes whose references were below 32 px."""
    from genbench.catalog import get_dataset

    store, names = artefact_store(job), get_dataset(job.dataset).classes
    out: dict[str, Any] = {"id": job.spec.adapt_id, "method": job.spec.adapt.method, "artefacts": str(store.dir),
                           "references": job.spec.adapt.references, "units": {}, "plain_classes": [],
                           "small_references": 0}
    if job.spec.adapt_from_name:
        out["retrieved"] = job.spec.adapt_from_name
    for unit in units(job):
        rec = store.record(unit) or {}
        key = "dataset" if unit == ALL else names[unit]
        out["units"][key] = "plain" if rec.get("plain") else rec.get("sha256")
        if rec.get("plain"):
            out["plain_classes"].append(key)
        out["small_references"] += int(rec.get("small_references", 0))
    return out
