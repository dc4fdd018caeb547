"""Collections that read other collections of the same run (RA starts from retrieved images).

A Source whose collections read another collection defines ``link(spec, entry_spec, where, dataset, upstream)``:
given the collections of the run that read nothing themselves (:class:`Upstream`, one per collection of the dataset),
it returns its spec with what it reads filled in (internal fields, so the reading collection's identity and name
change when what it reads changes) and the URIs it reads. The planner calls it before anything is written, so a
config whose collection has nothing to read is refused up front; the driver builds a collection after the
collections it reads. Sources without ``link`` read nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Upstream:
    """A collection of the run as one that reads it sees it: the config entry it comes from (``position`` in
    ``sources``), its kind, directory name, URI, identity (:meth:`CollectionJob.identity`) and the most shots the run
    asks of it."""

    position: int
    kind: str
    variant: str
    uri: str
    identity: dict[str, Any]
    shots: int

    def digest(self) -> str:
        """8 hex digits of the collection's identity: the same for the same settings wherever the output lives."""
        blob = json.dumps(self.identity, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


def link(source: Any, spec: Any, entry_spec: Any, where: str, dataset: str,
         upstream: list[Upstream]) -> tuple[Any, tuple[str, ...]]:
    """``source.link(...)`` where the source defines it, else the spec unchanged and nothing read."""
    hook = getattr(source, "link", None)
    if hook is None:
        return spec, ()
    return hook(spec, entry_spec, where, dataset, upstream)


def reads_others(source: Any) -> bool:
    return getattr(source, "link", None) is not None
