"""Retrieval-augmented generation (RA, Table 2's last row): each generated image starts from a retrieved image of its
class, read from the retrieved collection that the same run builds first.

Three steps, each where its inputs are:

- **link** (planner, before anything is written): pick the retrieved collection of the dataset (``ra_from`` when the
  config has several) and record its identity in the RA spec, so a different retrieved collection makes a different
  RA collection; no retrieved source for the dataset is a :class:`UsageError` (exit 2).
- **plan** (driver, once the retrieved collection is built): from its shard records, the retrieved shots each class
  has among its first ``ra_shots``; each RA slot gets the one it starts from (:func:`ra_pick`) in its task's payload.
- **produce** (worker): the chosen retrieved samples are read from their tars (:func:`read_selected`) and become
  img2img init images, or IP-Adapter image prompts.

The choice of retrieved image is seeded per (run seed, dataset, class, shot), never by batching or worker, and reads
only the first ``ra_shots`` shots of the retrieved collection, which never change when that collection grows.
"""

from __future__ import annotations

import hashlib
import logging
import os
from bisect import bisect_left
from dataclasses import replace
from functools import lru_cache
from typing import Any, Callable

from genbench.errors import UsageError
from genbench.seeds import sample_seed
from genbench.shards import manifest as mf
from genbench.shards.reader import read_selected
from genbench.shards.schema import decode_image, sample_key
from genbench.shards.store import Store
from genbench.sources.base import SlotPlan
from genbench.sources.links import Upstream

log = logging.getLogger(__name__)

RETRIEVED_KIND = "retrieved"
# The shortfall entry of a slot whose class had no retrieved image: such a shard is redone once the class has one.
NO_RETRIEVED = "no retrieved image of its class"


def parse_ra_from(value: Any, where: str) -> int | str:
    """``ra_from``: the retrieved source RA draws from, by its position in ``sources`` or its collection name."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10_000:
        return value
    if isinstance(value, str) and value.strip() and len(value) <= 300:
        return value.strip()
    raise UsageError(where, value, "a retrieved source of the config: its position in 'sources' (0-based) or its "
                                   "collection's name")


# ---------------------------------------------------------------------------------------------------------- link


def link_ra(spec: Any, entry_spec: Any, where: str, dataset: str, upstream: list[Upstream]) -> tuple[Any, tuple]:
    """The RA spec bound to the retrieved collection it draws from, and that collection's URI (built first)."""
    pool = [u for u in upstream if u.kind == RETRIEVED_KIND]
    listed = ", ".join(f"{u.position} ({u.variant})" for u in pool)
    if not pool:
        field = (f"{where}.per_dataset.{dataset}" if dataset in dict(entry_spec.per_dataset)
                 else f"{where}.strategies")
        raise UsageError(field, "ra", f"strategy ra only with a retrieved source for dataset {dataset} in 'sources' "
                                      "(RA starts each image from a retrieved image of its class)")
    if spec.ra_from is None:
        if len(pool) > 1:
            raise UsageError(f"{where}.ra_from", None,
                             f"the retrieved source of {dataset} that RA draws from: {listed}")
        chosen = pool[0]
    else:
        found = [u for u in pool if spec.ra_from in (u.position, u.variant)]
        if not found:
            raise UsageError(f"{where}.ra_from", spec.ra_from, f"a retrieved source of {dataset}: {listed}")
        chosen = found[0]
    if spec.ra_shots > chosen.shots:
        raise UsageError(f"{where}.ra_shots", spec.ra_shots,
                         f"at most the {chosen.shots} shot(s) sources[{chosen.position}] retrieves for {dataset} "
                         "(RA starts from a class's first ra_shots retrieved images)")
    linked = replace(spec, ra_retrieved=chosen.digest(), ra_retrieved_name=chosen.variant, ra_uri=chosen.uri)
    return linked, (chosen.uri,)


def check_ip_adapter(path: str, where: str) -> None:
    """An IP-Adapter is a local ``.safetensors`` file with its image encoder in ``image_encoder/`` beside it."""
    folder = os.path.dirname(os.path.abspath(path))
    if not (path.endswith(".safetensors") and os.path.isfile(path)
            and os.path.isfile(os.path.join(folder, "image_encoder", "config.json"))):
        raise UsageError(where, path, "an existing IP-Adapter weights file (.safetensors) with its image encoder in "
                                      "image_encoder/ beside it (as h94/IP-Adapter lays them out)")


@lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ip_adapter_id(path: str) -> str:
    """12 hex digits of the weights file's sha256: the IP-Adapter's identity, wherever the file lives."""
    st = os.stat(path)
    return _file_digest(os.path.abspath(path), st.st_size, st.st_mtime_ns)[:12]


# ---------------------------------------------------------------------------------------------------------- plan


def ra_pick(cls: int, shot: int, present: list[int], ra_shots: int, run_seed: int, dataset: str) -> int | None:
    """The retrieved shot that sample (``cls``, ``shot``) starts from: a seeded start in ``[0, ra_shots)``, then the
    first of the class's retrieved shots ``present`` (sorted) at or after it, wrapping; None when there is none.
    A sample whose start is present never depends on the other retrieved images."""
    if not present:
        return None
    start = sample_seed(run_seed, dataset, cls, shot, purpose="ra-init") % int(ra_shots)
    return present[bisect_left(present, start) % len(present)]


def retrieved_pool(store: Store, num_classes: int, ra_shots: int) -> dict[int, dict[int, str]]:
    """class -> {retrieved shot -> shard name} over the first ``ra_shots`` shots, from the collection's shard
    records (a record whose tar is gone or of another size does not count; empty slots are in its shortfall)."""
    limit = ra_shots * num_classes  # samples are shot-major: these are the first positions
    pool: dict[int, dict[int, str]] = {}
    for name, rec in sorted(mf.load_records(store).items()):
        if rec["slot_start"] >= limit or store.size(f"{name}.tar") != rec["bytes"]:
            continue
        short = {tuple(s) for s in rec.get("shortfall", [])}
        for pos in range(rec["slot_start"], min(rec["slot_stop"], limit)):
            slot = (pos % num_classes, pos // num_classes)
            if slot not in short:
                pool.setdefault(slot[0], {})[slot[1]] = name
    return pool


def plan_ra(job: Any, pending: list[Any], done: list[tuple[Any, dict[str, Any]]]) -> SlotPlan:
    """Each RA slot's retrieved sample, as payload ``(cls, shot, key, shard)`` (``key`` None: the class has none).
    A finished shard whose empty slots now have a retrieved image (the retrieval filled its class later) is redone."""
    spec = job.spec
    pool = retrieved_pool(Store(spec.ra_uri, job.storage_options), job.num_classes, spec.ra_shots)
    present = {c: sorted(shots) for c, shots in pool.items()}

    def payload(task: Any) -> tuple:
        out = []
        for cls, shot in task.members():
            j = ra_pick(cls, shot, present.get(cls, []), spec.ra_shots, job.run_seed, job.dataset)
            out.append((cls, shot, None, None) if j is None else (cls, shot, sample_key(cls, j), pool[cls][j]))
        return tuple(out)

    empty = [c for c in range(job.num_classes) if c not in present]
    if empty:
        log.warning("%s: %d class(es) have no retrieved image in %s to start from; their samples stay empty: %s",
                    job.uri, len(empty), spec.ra_retrieved_name, ", ".join(map(str, empty[:10])))
    redo = [t for t, rec in done if any(b.get("input") == NO_RETRIEVED and b["slot"][0] in present
                                        for b in rec.get("bad_samples", []) if isinstance(b, dict) and "slot" in b)]
    extras = {"ra": {"retrieved": spec.ra_retrieved_name, "retrieved_id": spec.ra_retrieved,
                     "pool_shots": spec.ra_shots, "pool_images": sum(len(v) for v in present.values()),
                     "classes_without_retrieved": empty}}
    return SlotPlan([replace(t, payload=payload(t)) for t in pending], [replace(t, payload=payload(t)) for t in redo],
                    extras)


# ---------------------------------------------------------------------------------------------------------- produce


def ra_starts(task: Any) -> tuple[Callable[[int, int], tuple[Any, dict[str, Any]]], list[tuple[int, int]]]:
    """(``start(cls, shot) -> (retrieved image, json fields naming it)``, the task's slots without a retrieved image).
    Each retrieved shard the task needs is read once, keeping only the samples it names."""
    job, spec = task.job, task.job.spec
    wanted: dict[str, set[str]] = {}
    for _cls, _shot, key, shard in task.payload:
        if key is not None:
            wanted.setdefault(shard, set()).add(key)
    store = Store(spec.ra_uri, job.storage_options)
    samples = {}
    for shard in sorted(wanted):
        samples.update(read_selected(store, shard, wanted[shard]))
    chosen = {(cls, shot): (key, shard) for cls, shot, key, shard in task.payload if key is not None}
    missing = [(cls, shot) for cls, shot, key, _ in task.payload if key is None]

    def start(cls: int, shot: int) -> tuple[Any, dict[str, Any]]:
        key, shard = chosen[(cls, shot)]
        if key not in samples:
            raise LookupError(f"retrieved sample {key} is not in {spec.ra_retrieved_name}/{shard}.tar")
        sample = samples[key]
        return decode_image(sample.image), {"retrieved_key": key, "retrieved_shard": shard,
                                            "retrieved_collection": spec.ra_retrieved_name,
                                            "retrieved_url": sample.meta.get("url")}

    return start, missing


def skip_missing(out: Any, missing: list[tuple[int, int]], spec: Any) -> None:
    """Slots whose class has no retrieved image go into the shortfall, logged and counted."""
    for slot in missing:
        out.skip(slot, NO_RETRIEVED, LookupError(f"class {slot[0]} has none among the first {spec.ra_shots} shots of "
                                                 f"{spec.ra_retrieved_name}"))
