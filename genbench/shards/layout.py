"""Which sample goes in which shard.

Samples are ordered shot-major (all classes' shot 0, then all classes' shot 1, ...), and shard ``i`` holds positions
``[i * shard_size, (i + 1) * shard_size)`` of that order. A sample's shard therefore depends only on (class, shot),
the class count of its dataset and the shard size -- never on the total shot count -- so a 1000-shot run reuses every
full shard of a 500-shot run, and a k-shot subset is a prefix of the shard list. Only the last shard of a run can be
partial; growing the run completes it (rewriting it with its first samples byte-identical) and adds new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from genbench.errors import UsageError


def shard_name(shard_id: int) -> str:
    return f"{int(shard_id):06d}"


@dataclass(frozen=True)
class Layout:
    num_classes: int
    shard_size: int

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise UsageError("shard_size", self.shard_size, "a positive integer")
        if self.num_classes < 1:
            raise UsageError("num_classes", self.num_classes, "a positive integer")

    def position(self, cls: int, shot: int) -> int:
        return int(shot) * self.num_classes + int(cls)

    def shard_of(self, cls: int, shot: int) -> int:
        return self.position(cls, shot) // self.shard_size

    def num_shards(self, shots: int) -> int:
        total = int(shots) * self.num_classes
        return -(-total // self.shard_size)

    def slot_range(self, shard_id: int, shots: int) -> tuple[int, int]:
        """Positions [start, stop) of shard ``shard_id`` in a run of ``shots`` shots."""
        start = shard_id * self.shard_size
        return start, min(start + self.shard_size, int(shots) * self.num_classes)

    def slots(self, start: int, stop: int) -> list[tuple[int, int]]:
        """The (class, shot) slots at positions [start, stop), in write order."""
        return [(p % self.num_classes, p // self.num_classes) for p in range(start, stop)]

    def members(self, shard_id: int, shots: int) -> list[tuple[int, int]]:
        """The (class, shot) slots of shard ``shard_id`` in a run of ``shots`` shots, in write order."""
        return self.slots(*self.slot_range(shard_id, shots))
