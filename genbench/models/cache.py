"""Where built models live, and how a model directory is written once even with concurrent writers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"


def default_cache_dir() -> str:
    """``$GENBENCH_CACHE`` if set, else ``~/.cache/genbench``."""
    env = os.environ.get("GENBENCH_CACHE")
    return env if env else os.path.join(os.path.expanduser("~"), ".cache", "genbench")


def load_config(name: str) -> dict[str, Any]:
    """A JSON config shipped in ``genbench/models/configs/<name>.json``. A config with ``"extends": "<other>"`` is that
    other config with this one's values laid over it (mappings merged key by key, anything else replaced; a mapping
    that names another ``class`` than the one it overlays replaces it whole)."""
    with open(CONFIG_DIR / f"{name}.json", encoding="utf-8") as f:
        config = json.load(f)
    base = config.pop("extends", None)
    return _overlay(load_config(base), config) if base else config


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        merge = isinstance(value, dict) and isinstance(below, dict) \
            and value.get("class", below.get("class")) == below.get("class")
        out[key] = _overlay(below, value) if merge else value
    return out


def config_hash(config: dict[str, Any], length: int = 12) -> str:
    """Stable short hash of a JSON-able config: the cache key of a built model."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_once(target: Path, builder: Callable[[Path], None], marker: str) -> Path:
    """Make ``target`` exist with ``marker`` inside, calling ``builder(tmp_dir)`` only if it does not.

    The builder writes into a private temp dir next to ``target`` which is then renamed into place: a rename of a
    directory is atomic on POSIX, so concurrent processes (Ray workers on one node) either win the rename or find the
    winner's complete copy; nobody ever sees a half-written model.
    """
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        log.info("building %s (first use; later loads read the saved copy)", target.name)
        builder(tmp)
        # mkdtemp makes the dir private (0700); give the final model dir the usual permissions under the umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process renamed its copy first (the target is a non-empty dir): use that one.
            if not (target / marker).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
