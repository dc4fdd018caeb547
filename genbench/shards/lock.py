"""One writer per collection: a lock file, ``.genbench.lock``, held for a whole run.

It records who holds it (host, pid, since). A second run finds it and fails (exit 2) or waits, as configured. A lock
left by a process of this host that is gone (the run was killed) is taken over with a warning. A lock of another
host cannot be checked for life: it is honoured until ``stale_after_s`` has passed since it was taken.

Locally the file is created with ``O_EXCL`` (two runs cannot both create it). On object stores, which have no such
create, the check-then-write leaves a short window; the lock still stops the common case of a second run started
while the first is busy.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from genbench.errors import UsageError
from genbench.shards.store import Store, host_name, pid_alive

log = logging.getLogger(__name__)

LOCK = ".genbench.lock"


@dataclass
class Holder:
    host: str
    pid: int
    since: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.since))}"


def _read(store: Store) -> Holder | None:
    try:
        raw = json.loads(store.read_bytes(LOCK))
        return Holder(str(raw["host"]), int(raw["pid"]), float(raw["since"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError):
        return Holder("?", -1, 0.0)  # unreadable: a writer died mid-write; treated as stale


def _stale(holder: Holder, stale_after_s: float) -> bool:
    if holder.pid < 0:
        return True
    if holder.host == host_name():
        return not pid_alive(holder.pid)
    return time.time() - holder.since > stale_after_s


def _create(store: Store, me: dict[str, Any]) -> bool:
    data = json.dumps(me).encode()
    if store.local:
        path = store.path(LOCK)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    if store.exists(LOCK):
        return False
    store.write_bytes(LOCK, data)
    return True


class CollectionLock:
    """``with CollectionLock(store, on_locked="fail"):`` holds the collection for the block."""

    def __init__(self, store: Store, on_locked: str = "fail", wait_s: float = 3600.0, stale_after_s: float = 24 * 3600.0,
                 poll_s: float = 1.0):
        self.store, self.on_locked, self.wait_s, self.stale_after_s, self.poll_s = (
            store, on_locked, wait_s, stale_after_s, poll_s)
        self.held = False

    def acquire(self) -> None:
        me = {"host": host_name(), "pid": os.getpid(), "since": time.time()}
        deadline = time.monotonic() + self.wait_s
        while True:
            if _create(self.store, me):
                self.held = True
                return
            holder = _read(self.store)
            if holder is None:
                continue  # released between our create and our read: try again
            if _stale(holder, self.stale_after_s):
                log.warning("%s: taking over a stale lock of %s", self.store.uri, holder.describe())
                self.store.remove(LOCK)
                continue
            if self.on_locked != "wait" or time.monotonic() > deadline:
                waited = " (waited %.0f s)" % self.wait_s if self.on_locked == "wait" else ""
                raise UsageError("out", self.store.uri,
                                 f"a collection no other run is writing: it is locked by {holder.describe()}{waited}; "
                                 "wait for that run, or set engine.on_locked: wait")
            time.sleep(self.poll_s)

    def release(self) -> None:
        if self.held:
            holder = _read(self.store)
            if holder is not None and holder.host == host_name() and holder.pid == os.getpid():
                self.store.remove(LOCK)
            self.held = False

    def __enter__(self) -> "CollectionLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
