"""Per-sample seeds: a hash of (run seed, dataset, class, shot), independent of batching, workers, order and retries."""

from __future__ import annotations

import hashlib


def sample_seed(run_seed: int, dataset: str, cls: int, shot: int, purpose: str = "image") -> int:
    """A 63-bit seed for one sample. ``purpose`` separates independent streams (image noise, prompt choice, ...)."""
    key = f"{int(run_seed)}|{dataset}|{int(cls)}|{int(shot)}|{purpose}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
