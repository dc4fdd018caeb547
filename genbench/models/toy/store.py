"""Where trained toy models live, and training them exactly once per recipe, even with concurrent workers.

A toy model's directory is ``<cache>/models/<name>-<key>`` where ``key`` hashes its shipped config (architecture and
training recipe) and the trainer's version: change either and the next use trains a new one. Training runs under an
exclusive file lock next to that directory (``fcntl.flock``, released by the kernel if the process dies), into a
private temporary directory that is renamed into place only when complete, with ``toy_record.json`` written last.
So a concurrent worker waits for the first one's model instead of training its own, and nobody sees half a model.

The repository ships the trained weights (``weights/<name>/``, float16, a few MB): when their record names the
current recipe they are used as they are and nothing trains; ``genbench toy train --ship`` rewrites them, and
``benchmarks/toy_train.py`` retrains from scratch and compares.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from genbench.errors import UsageError
from genbench.models.cache import config_hash, default_cache_dir, load_config

log = logging.getLogger(__name__)

TOY_MODELS = ("toy-clip", "toy-sd")
RECORD = "toy_record.json"
# Bump when a trainer changes what it writes for the same config: the directory key changes with it.
TRAINER_VERSION = 1
SHIPPED_DIR = Path(__file__).parent / "weights"


def recipe_key(name: str, recipe: dict[str, Any] | None = None) -> str:
    """The hash naming a trained copy: the recipe (default: the shipped config of ``name``), the trainer version and
    what the trainers read besides it: the training split's fingerprint and the texts the tokenizer and captions come
    from (the catalog's templates, the strategies' words)."""
    config = recipe if recipe is not None else load_config(name)
    return config_hash({"trainer": TRAINER_VERSION, "config": config,
                        "inputs": _inputs(config.get("train", {}).get("dataset", "digits"))})


@functools.lru_cache(maxsize=8)
def _inputs(dataset: str) -> dict[str, Any]:
    from genbench.models.toy.data import training_inputs

    return training_inputs(dataset)


def _target(name: str, cache_dir: str | None, recipe: dict[str, Any] | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "models" / f"{name}-{recipe_key(name, recipe)}"


def shipped_dir(name: str) -> Path | None:
    """The weights shipped in the package for ``name``, if they were trained from the current recipe."""
    where = SHIPPED_DIR / name
    try:
        return where if read_record(where).get("recipe_key") == recipe_key(name) else None
    except (OSError, ValueError):
        return None


def read_record(directory: str | Path) -> dict[str, Any]:
    """The ``toy_record.json`` of a trained toy model directory: recipe key, training facts, weights' sha256."""
    with open(Path(directory) / RECORD, encoding="utf-8") as f:
        return json.load(f)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _current(target: Path, key: str) -> bool:
    """Whether ``target`` holds a complete copy trained from the recipe ``key``."""
    try:
        return read_record(target).get("recipe_key") == key
    except (OSError, ValueError):
        return False


def _trainer(name: str) -> Callable[..., dict[str, Any]]:
    if name == "toy-clip":
        from genbench.models.toy.clip_train import train_toy_clip

        return train_toy_clip
    from genbench.models.toy.sd_train import train_toy_sd

    return train_toy_sd


def toy_model_dir(name: str, cache_dir: str | None = None, retrain: bool = False, progress: bool = False,
                  target: Path | None = None, recipe: dict[str, Any] | None = None) -> Path:
    """The directory of toy model ``name`` (``toy-clip`` or ``toy-sd``): the shipped weights when they match the
    recipe, else the cached copy, training it first if there is none (``retrain``: train again in any case and
    replace the cached copy; ``target``: train into that directory instead of the cache; ``recipe``: another
    config than the shipped one, e.g. a shorter training)."""
    if name not in TOY_MODELS:
        raise UsageError("toy model", name, TOY_MODELS)
    if not retrain and target is None and recipe is None and (shipped := shipped_dir(name)) is not None:
        return shipped
    target = Path(target) if target is not None else _target(name, cache_dir, recipe)
    key = recipe_key(name, recipe)
    if not retrain and _current(target, key):
        return target
    with _exclusive(target.parent / f".{target.name}.lock"):
        if not retrain and _current(target, key):
            return target  # another process trained it while this one waited
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            log.info("training toy model %s (first use; later loads read %s)", name, target)
            config = recipe if recipe is not None else load_config(name)
            start = time.perf_counter()
            facts = _trainer(name)(config, tmp, progress=progress)
            record = {"model": name, "recipe_key": key, "trainer_version": TRAINER_VERSION,
                      "train_seconds": round(time.perf_counter() - start, 2), **facts}
            (tmp / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)
            # Replacing a copy (retrain): move it aside first, so the target is always either the old complete copy or
            # the new one; a reader still holding the old files keeps them until it closes them.
            old = Path(f"{tmp}.old")
            if target.exists():
                os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
            log.info("trained %s in %.1f s", name, record["train_seconds"])
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target
