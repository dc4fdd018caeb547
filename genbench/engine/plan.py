"""Planning: a collection spec -> shard tasks. Pure and deterministic (no Ray, no I/O beyond reading done-records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from genbench.shards.layout import Layout, shard_name


@dataclass(frozen=True)
class CollectionJob:
    """Everything a worker needs to make one collection's samples; small and picklable (sent with every task)."""

    dataset: str
    source: str  # generated | original | retrieved
    variant: str
    uri: str
    run_seed: int
    num_classes: int
    shots: int
    shard_size: int
    clip: str | None
    data_root: str | None = None
    cache_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # fsspec options for the output filesystem (e.g. {"endpoint_url": ...} for an S3-compatible server); credentials
    # should come from the environment or the cloud's metadata service, not from here.
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
            "options": dict(self.options),
        }


@dataclass(frozen=True)
class ShardTask:
    job: CollectionJob
    shard_id: int
    slot_start: int
    slot_stop: int
    # Source-specific inputs per slot, e.g. the URL chosen for each (class, shot) of a retrieved collection.
    payload: tuple = ()

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
