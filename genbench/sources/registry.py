"""Finding a Source by name, in the driver and in every Ray worker alike.

A config's ``source:`` is a built-in kind (``generated``, ``original``, ``retrieved``), a kind another package
registers under the ``genbench.sources`` entry-point group, or an importable ``module:Class`` reference. Each resolves
to a ``module:Class`` string, which is what a collection job carries to the workers: they import it themselves. A
dict filled at import time would not do, because a worker process never runs the driver's registration code.
"""

from __future__ import annotations

import importlib
import re
from functools import lru_cache
from importlib.metadata import entry_points

from genbench.errors import UsageError

ENTRY_POINT_GROUP = "genbench.sources"
# The built-in kinds, as references (plain data: the same in every process).
BUILTIN = {
    "generated": "genbench.sources.generated:GeneratedSource",
    "original": "genbench.sources.original:OriginalSource",
    "retrieved": "genbench.sources.retrieved:RetrievedSource",
}
_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_kinds() -> tuple[str, ...]:
    return tuple(sorted(set(BUILTIN) | set(_plugins())))


def resolve(name: object, field: str = "source") -> str:
    """The ``module:Class`` reference of a kind name or of a reference given as such."""
    if isinstance(name, str) and name in BUILTIN:
        return BUILTIN[name]
    if isinstance(name, str):
        plugins = _plugins()
        if name in plugins:
            return plugins[name]
        if _REF.match(name):
            return name
    raise UsageError(field, name, f"one of {', '.join(known_kinds())}, or a Source as module:Class")


def load(ref: str, field: str = "source"):
    """The Source instance a ``module:Class`` reference names (imported once per process; one instance per ref)."""
    try:
        return _load(ref)
    except (ImportError, AttributeError) as exc:
        raise UsageError(field, ref, f"an importable Source (module:Class): {type(exc).__name__}: {exc}") from None
    except UsageError as exc:
        raise UsageError(exc.field.replace("source", field, 1), exc.value, exc.allowed) from None


@lru_cache(maxsize=None)
def _load(ref: str):
    from genbench.sources.base import Source

    field = "source"
    module, _, name = ref.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise UsageError(field, ref, "a subclass of genbench.sources.base.Source")
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise UsageError(f"{field} ({ref}).kind", kind, "a short lower-case name for the collection directory ([a-z0-9_-])")
    if not isinstance(getattr(cls, "spec_type", None), type):
        raise UsageError(f"{field} ({ref}).spec_type", None, "the Source's spec dataclass (a SourceSpec subclass)")
    return cls()


def kinds_with_key(key: str) -> list[str]:
    """The built-in kinds whose config has ``key`` (to say where a misplaced key belongs)."""
    return [kind for kind, ref in BUILTIN.items() if key in load(ref).spec_type.config_keys()]
