"""A collection's directory through fsspec: a local path or any fsspec URL (``s3://bucket/prefix``).

Writes are atomic: a local file is written under a temporary name in the same directory, fsynced and renamed; a
remote object is uploaded whole (an S3 PUT is all-or-nothing), so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
import uuid
from typing import Iterator

import fsspec


def join(uri: str, *parts: str) -> str:
    if "://" in uri:
        return posixpath.join(uri.rstrip("/"), *parts)
    return os.path.join(uri, *parts)


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


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
        return posixpath.join(self.root, *parts) if not self.local else os.path.join(self.root, *parts)

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
        return self.fs.open(self.path(rel), mode)

    def listdir(self, rel: str = "") -> list[str]:
        """Names (not paths) directly under ``rel``; empty when it does not exist."""
        try:
            entries = self.fs.ls(self.path(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(e.rstrip("/")) for e in entries)

    def makedirs(self, rel: str = "") -> None:
        if self.local:
            os.makedirs(self.path(rel), exist_ok=True)

    def sha256(self, rel: str) -> str:
        h = hashlib.sha256()
        with self.fs.open(self.path(rel), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def remove(self, rel: str) -> None:
        try:
            self.fs.rm(self.path(rel))
        except FileNotFoundError:
            pass

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Atomically create or replace ``rel`` with ``data``."""
        if self.local:
            final = self.path(rel)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.{uuid.uuid4().hex}.tmp")
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
            final = self.path(rel)
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
            final = self.path(rel)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            directory = os.path.dirname(final)
        else:
            directory = tempfile.gettempdir()
        return os.path.join(directory, f".{posixpath.basename(rel)}.{uuid.uuid4().hex}.tmp")

    def clean_temp_files(self) -> Iterator[str]:
        """Remove temporaries left by a killed writer (local only: remote uploads leave none)."""
        if not self.local or not os.path.isdir(self.root):
            return iter(())
        removed = []
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    os.unlink(os.path.join(dirpath, name))
                    removed.append(name)
        return iter(removed)
