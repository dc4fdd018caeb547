"""A collection's directory through fsspec: a local path or any fsspec URL (``s3://bucket/prefix``).

Writes are atomic: a local file is written under a temporary name in the same directory, fsynced and renamed; a
remote object is uploaded whole (an S3 PUT is all-or-nothing), so a reader never sees half a file.

Every path is relative to the collection and stays inside it: absolute paths, ``..``, backslashes and NULs are
refused; locally, a path is resolved and must land under the collection's own root, and nothing is written or
deleted through a symlinked directory (a ``stats`` or ``emb`` replaced by a link to elsewhere is refused, not followed).
Temporary files carry their writer's host and process id, so a sweep removes only what dead writers left.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import socket
import tempfile
import time
import uuid
from typing import Iterator

import fsspec

from genbench.errors import UsageError

_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_.-]+)~(?P<pid>\d+)~[0-9a-f]{32}\.tmp$")
_LEGACY_TEMP = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")
# A temporary file of another host cannot be checked for a live writer: swept only when this old.
FOREIGN_TEMP_MAX_AGE_S = 24 * 3600


def join(uri: str, *parts: str) -> str:
    if "://" in uri:
        return posixpath.join(uri.rstrip("/"), *parts)
    return os.path.join(uri, *parts)


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def host_name() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()) or "host"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host is running (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _check_rel(rel: str) -> str:
    """``rel`` as a safe relative POSIX path, or a UsageError."""
    parts = rel.split("/") if rel else []
    if ("\x00" in rel or "\\" in rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or (parts and os.path.isabs(rel))):
        raise UsageError("path", rel, "a path inside the collection (relative, no '..', no backslash)")
    return rel


class Store:
    def __init__(self, uri: str, storage_options: dict | None = None):
        self.uri = uri.rstrip("/") if "://" in uri else os.path.abspath(uri)
        self.local = is_local(self.uri)
        options = dict(storage_options or {})
        if not self.local:
            # Other processes (workers, download actors) write here: a cached listing would hide their files.
            options.setdefault("use_listings_cache", False)
        self.fs, self.root = fsspec.core.url_to_fs(self.uri, **options)

    def path(self, *parts: str) -> str:
        rel = "/".join(p for p in parts if p)
        if rel:
            _check_rel(rel)
        if not self.local:
            return posixpath.join(self.root, rel) if rel else self.root
        full = os.path.join(self.root, *rel.split("/")) if rel else self.root
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(full)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise UsageError("path", rel, f"a path that stays inside the collection {self.uri}")
        return full

    def _for_writing(self, rel: str, directory: bool = False) -> str:
        """The local path of ``rel``, refusing a symlinked directory anywhere between the root and it (``rel``
        itself included when it names a ``directory``)."""
        full = self.path(rel)
        parts = (rel.split("/") if directory else rel.split("/")[:-1]) if rel else []
        here = self.root
        for p in parts:
            here = os.path.join(here, p)
            if os.path.islink(here):
                raise UsageError("path", rel, f"a path in {self.uri} without symlinked directories ({p} is a link)")
        return full

    def url(self, *parts: str) -> str:
        return join(self.uri, *parts)

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def size(self, rel: str) -> int | None:
        try:
            return int(self.fs.size(self.path(rel)))
        except FileNotFoundError:
            return None

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def open(self, rel: str, mode: str = "rb"):
        return self.fs.open(self.path(rel) if "r" in mode else self._target(rel), mode)

    def _target(self, rel: str) -> str:
        return self._for_writing(rel) if self.local else self.path(rel)

    def listdir(self, rel: str = "") -> list[str]:
        """Names (not paths) directly under ``rel``; empty when it does not exist."""
        try:
            entries = self.fs.ls(self.path(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(e.rstrip("/")) for e in entries)

    def makedirs(self, rel: str = "") -> None:
        if self.local:
            os.makedirs(self._for_writing(rel, directory=True), exist_ok=True)

    def sha256(self, rel: str) -> str:
        h = hashlib.sha256()
        with self.fs.open(self.path(rel), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def remove(self, rel: str) -> None:
        try:
            self.fs.rm(self._target(rel))
        except FileNotFoundError:
            pass

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Atomically create or replace ``rel`` with ``data``."""
        if self.local:
            final = self._for_writing(rel)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            tmp = os.path.join(os.path.dirname(final), _temp_name(os.path.basename(final)))
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, final)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            self.fs.pipe_file(self.path(rel), data)

    def put_file(self, local_path: str, rel: str) -> None:
        """Move a finished local temporary file to ``rel`` (rename locally, upload remotely)."""
        if self.local:
            final = self._for_writing(rel)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(local_path, final)
        else:
            try:
                self.fs.put_file(local_path, self.path(rel))
            finally:
                os.unlink(local_path)

    def temp_file(self, rel: str) -> str:
        """A temporary local path to write ``rel`` into before :meth:`put_file` (same filesystem when local)."""
        if self.local:
            final = self._for_writing(rel)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            directory = os.path.dirname(final)
        else:
            directory = tempfile.gettempdir()
        return os.path.join(directory, _temp_name(posixpath.basename(rel)))

    def clean_temp_files(self) -> Iterator[str]:
        """Remove temporaries whose writer is dead: a process of this host that is gone, a writer of another host
        after :data:`FOREIGN_TEMP_MAX_AGE_S`, or an unnamed writer of an earlier genbench (local only: remote uploads
        leave none). A live writer's file, another run's among them, is left alone."""
        if not self.local or not os.path.isdir(self.root):
            return iter(())
        removed = []
        me, now = host_name(), time.time()
        for dirpath, _, files in os.walk(self.root):  # does not follow symlinked directories
            for name in files:
                path = os.path.join(dirpath, name)
                m = _TEMP.match(name)
                if m:
                    if m["host"] == me:
                        dead = not pid_alive(int(m["pid"]))
                    else:
                        dead = now - os.lstat(path).st_mtime > FOREIGN_TEMP_MAX_AGE_S
                elif _LEGACY_TEMP.match(name):
                    dead = True
                else:
                    continue
                if dead:
                    os.unlink(path)
                    removed.append(name)
        return iter(removed)


def _temp_name(base: str) -> str:
    return f".{base}.{host_name()}~{os.getpid()}~{uuid.uuid4().hex}.tmp"
