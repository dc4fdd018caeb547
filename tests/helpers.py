"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from typing import Callable, Iterator


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


def write_captions(path: str, base: str, paths: list[str], captions: list[str], vectors: list) -> None:
    """A caption shard as `genbench index build` reads it: each image path served under ``base``, its caption, and
    its text embedding (normalised here)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb = np.asarray(vectors, dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    table = pa.table({"url": [base + p for p in paths], "caption": captions,
                      "text_embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])})
    pq.write_table(table, path)


@contextmanager
def worker_killed_during(method: str, ready: Callable[[], bool], before_kill: Callable[[], None] | None = None,
                         timeout: float = 120.0) -> Iterator[dict[str, list]]:
    """Within the block, the engine's real WorkerPool, except that once it dispatches ``method`` a thread waits for
    ``ready()`` (e.g. a first commit: the workers are then busy with their next task), calls ``before_kill()`` and
    SIGKILLs the first worker. Yields ``{"killed": [pid], "errors": [...]}``, filled by that thread."""
    import signal
    import threading
    import time

    from genbench.engine import dispatch

    state: dict[str, list] = {"killed": [], "errors": []}

    class KillingPool(dispatch.WorkerPool):
        def map(self, name, items, on_result, **kw):
            if name == method:
                victim = self.pids()[0]

                def killer() -> None:
                    try:
                        deadline = time.time() + timeout
                        while not ready():
                            assert time.time() < deadline, f"timed out waiting to kill a worker during {method}"
                            time.sleep(0.02)
                        if before_kill is not None:
                            before_kill()
                        os.kill(victim, signal.SIGKILL)
                        state["killed"].append(victim)
                    except BaseException as exc:  # noqa: BLE001 - the test asserts on state["errors"]
                        state["errors"].append(exc)

                threading.Thread(target=killer, daemon=True).start()
            return super().map(name, items, on_result, **kw)

    real = dispatch.WorkerPool
    dispatch.WorkerPool = KillingPool
    try:
        yield state
    finally:
        dispatch.WorkerPool = real
