"""Planning: a collection -> its shard tasks. Pure and deterministic (no Ray, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from genbench.shards.layout import Layout, shard_name


@dataclass(frozen=True)
class CollectionJob:
    """Everything a worker needs to make one collection's samples; small and picklable (sent with every task).

    ``source`` is the kind (the directory's source part); ``source_ref`` the ``module:Class`` a worker imports;
    ``spec`` the source's typed spec for this one collection; ``shots`` the collection's extent (what it holds on disk,
    at least what the run asks for)."""

    dataset: str
    source: str
    source_ref: str
    spec: Any
    variant: str
    uri: str
    run_seed: int
    num_classes: int
    shots: int
    shard_size: int
    clip: str | None
    data_root: str | None = None
    cache_dir: str | None = None
    # fsspec options for the output filesystem (e.g. {"endpoint_url": ...} for an S3-compatible server); credentials
    # come from the environment or the cloud's metadata service, never from here.
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        return Layout(self.num_classes, self.shard_size)

    def identity(self) -> dict[str, Any]:
        """The settings that decide the bytes of every sample (shots may grow; everything else must match)."""
        return {
            "dataset": self.dataset,
            "source": self.source,
            "variant": self.variant,
            "run_seed": self.run_seed,
            "num_classes": self.num_classes,
            "shard_size": self.shard_size,
            "options": self.spec.identity_options() if self.spec is not None else {},
        }


@dataclass(frozen=True)
class ShardTask:
    """One shard to make (``embed_only``: its tar is done, only a CLIP model's sidecar is missing)."""

    job: CollectionJob
    shard_id: int
    slot_start: int
    slot_stop: int
    # Source-specific inputs per slot, e.g. the URL chosen for each (class, shot) of a retrieved collection.
    payload: tuple = ()
    embed_only: bool = False

    @property
    def name(self) -> str:
        return shard_name(self.shard_id)

    @property
    def label(self) -> str:
        return f"{self.job.dataset}/{self.job.source}/{self.job.variant}/{self.name}"

    def members(self) -> list[tuple[int, int]]:
        return self.job.layout.slots(self.slot_start, self.slot_stop)


def plan_collection(job: CollectionJob) -> list[ShardTask]:
    """Every shard of ``job`` at its shot count, in order."""
    layout = job.layout
    return [ShardTask(job, sid, *layout.slot_range(sid, job.shots)) for sid in range(layout.num_shards(job.shots))]


def recorded_shots(records: dict[str, dict[str, Any]], num_classes: int) -> int:
    """How many shots the shard records on disk cover (0 for a new collection): a later run that asks for fewer
    still plans the collection at this extent, so its shards are recognised and scored as a prefix, never redone."""
    stops = [int(r.get("slot_stop", 0)) for r in records.values() if isinstance(r.get("slot_stop"), int)]
    return -(-max(stops) // num_classes) if stops else 0
