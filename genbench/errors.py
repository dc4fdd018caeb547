"""Errors a user can act on.

Every error that reaches the command line as exit code 2 is a :class:`UsageError`: one line that names the field or
argument, the bad value and what is allowed, raised before anything is written.
"""

from __future__ import annotations

from typing import Any, Iterable


class GenbenchError(Exception):
    """Base class of genbench's own errors."""


MAX_SHOWN = 120  # characters of a bad value echoed back: an error line must stay one short line


def shown(value: Any) -> str:
    """``repr(value)`` cut to :data:`MAX_SHOWN` characters, on one line."""
    text = repr(value).replace("\n", "\\n")
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


class UsageError(GenbenchError, ValueError):
    """Bad input (config, argument, missing dataset). The CLI prints it on one line and exits with code 2."""

    def __init__(self, field: str, value: Any, allowed: str | Iterable[str]):
        if not isinstance(allowed, str):
            allowed = "one of " + ", ".join(str(a) for a in allowed)
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}: got {shown(value)}; allowed: {allowed}")

    def __reduce__(self):  # raised in a Ray worker, it must arrive in the driver as itself
        return (UsageError, (self.field, self.value, self.allowed))


class DatasetNotFound(UsageError):
    """A catalog dataset whose files are not under data_root. The message says where we looked and what is accepted."""

    def __init__(self, dataset: str, looked_at: str, layouts: Iterable[str], origin: str):
        self.dataset, self.looked_at, self.origin = dataset, looked_at, origin
        self.layouts = list(layouts)
        GenbenchError.__init__(
            self,
            f"dataset {dataset!r}: no files found at {looked_at}; accepted layouts: {', '.join(self.layouts)}; "
            f"the data comes from {origin} (genbench never downloads during a run)",
        )
        self.field, self.value, self.allowed = "dataset", dataset, "a dataset present under data_root"

    def __reduce__(self):
        return (DatasetNotFound, (self.dataset, self.looked_at, self.layouts, self.origin))


class ShardFailures(GenbenchError):
    """Shards that stayed failed after the bounded retries; the CLI exits non-zero naming each."""

    def __init__(self, failed: dict[str, str]):
        self.failed = dict(failed)
        names = "; ".join(f"{k}: {v}" for k, v in sorted(self.failed.items()))
        super().__init__(f"{len(self.failed)} shard(s) stayed failed after retries: {names}")
