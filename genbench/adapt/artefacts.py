"""Per-class adaptation artefacts on disk: ``<root>/<method>-<key>/cNNNN.safetensors`` and ``cNNNN.json``.

A class is done when its JSON record exists and names the sha256 of its weights file: the weights are written to a
temporary name, fsynced and renamed first, the record last, so a process killed mid-class leaves that class to be
redone and every finished class untouched. ``key`` hashes the method, its settings, the base model, the dataset and
the run seed: artefacts made for another base model or dataset live elsewhere, and loading one into the wrong place is
refused by name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from genbench.errors import UsageError
from genbench.models.cache import config_hash
from genbench.models.cache import file_digest


ALL = -1
_checked: dict[tuple, dict[str, Any]] = {}  # verified records by (record path, sizes and mtimes of both files)


class ClassArtefacts:
    def __init__(self, root: str | Path, method: str, identity: dict[str, Any]):
        self.identity = {"method": method, **identity}
        self.dir = Path(root) / f"{method}-{config_hash(self.identity)}"

    def _paths(self, cls: int) -> tuple[Path, Path]:
        # Class -1 is the whole dataset (one LoRA for every class).
        stem = "dataset" if int(cls) == ALL else f"c{int(cls):04d}"
        return self.dir / f"{stem}.safetensors", self.dir / f"{stem}.json"

    def record(self, cls: int) -> dict[str, Any] | None:
        """The finished class's record: its weights' sha256 checked, or a "plain" record (the class had no reference
        image and is generated without adaptation); None while the class is not done. A check is remembered while
        neither file changes (size and mtime), so a worker switching classes does not hash the same weights again."""
        weights, record = self._paths(cls)
        try:
            stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (record, weights) if p.exists())
            key = (str(record), stamp)
            if key in _checked:
                return _checked[key]
            facts = json.loads(record.read_text(encoding="utf-8"))
            ok = facts.get("plain") is True or (weights.is_file() and facts.get("sha256") == file_digest(weights))
        except (OSError, ValueError):
            return None
        if not ok:
            return None
        if len(_checked) > 100_000:
            _checked.clear()
        _checked[key] = facts
        return facts

    def done(self, cls: int) -> bool:
        return self.record(cls) is not None

    def plain(self, cls: int) -> bool:
        """Whether a finished class is generated without adaptation (it had no reference image)."""
        facts = self.record(cls)
        return bool(facts and facts.get("plain"))

    def commit(self, cls: int, weights_file: str | Path, facts: dict[str, Any]) -> Path:
        """Move ``weights_file`` (a safetensors file this process wrote) into place, then write the record."""
        weights, record = self._paths(cls)
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(weights_file, "rb") as f:
            os.fsync(f.fileno())
        os.replace(weights_file, weights)
        self._write_record(record, {**facts, "class": int(cls), "identity": self.identity,
                                    "sha256": file_digest(weights)})
        return weights

    def commit_plain(self, cls: int, reason: str, facts: dict[str, Any]) -> None:
        """Record that class ``cls`` is generated without adaptation, and why (no weights file)."""
        _, record = self._paths(cls)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_record(record, {**facts, "class": int(cls), "identity": self.identity, "plain": True,
                                    "reason": reason})

    def _write_record(self, record: Path, body: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{record.name}.", dir=self.dir)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, record)

    def weights(self, cls: int, base: str, dataset: str) -> Path:
        """The weights file of a finished class, after checking it was made for ``base`` on ``dataset``."""
        weights, record = self._paths(cls)
        if not self.done(cls) or self.plain(cls):
            raise UsageError("adapter", str(weights), "a finished adaptation (train it first)")
        made_for = json.loads(record.read_text(encoding="utf-8"))["identity"]
        if made_for.get("base") != base or made_for.get("dataset") != dataset:
            raise UsageError("adapter", str(weights), f"an adapter made for base {base!r} and dataset {dataset!r} "
                                                       f"(it was made for {made_for.get('base')!r} on "
                                                       f"{made_for.get('dataset')!r})")
        return weights

    def sweep(self) -> None:
        """Remove what killed attempts left here: scratch directories and half-written records (call only when no
        trainer writes to this store)."""
        if not self.dir.is_dir():
            return
        for p in self.dir.iterdir():
            if p.name.startswith(".scratch-") and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.name.startswith(".") and ".json." in p.name:
                p.unlink(missing_ok=True)

    def scratch(self) -> Path:
        """A private directory next to the artefacts for a trainer's output before commit."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".scratch-", dir=self.dir))
