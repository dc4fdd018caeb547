"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

import hashlib
import os


def sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tars(collection: str) -> list[str]:
    return sorted(os.path.join(collection, f) for f in os.listdir(collection) if f.endswith(".tar"))


def snapshot(collection: str) -> dict[str, tuple[str, int]]:
    """name -> (sha256, mtime_ns) of every tar and stats record in a collection."""
    out = {}
    for path in tars(collection):
        out[os.path.basename(path)] = (sha(path), os.stat(path).st_mtime_ns)
    stats = os.path.join(collection, "stats")
    for name in sorted(os.listdir(stats)) if os.path.isdir(stats) else []:
        p = os.path.join(stats, name)
        out["stats/" + name] = (sha(p), os.stat(p).st_mtime_ns)
    return out
