"""Checks for values read from configs and arguments: each returns the clean value or raises a one-line
:class:`UsageError` naming the field, the bad value and what is allowed.

Numbers are bounded (a config value must never be able to ask for a trillion images) and must be finite; booleans
are not numbers (YAML's ``yes`` is not 1); strings are non-empty and hold no NUL.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any, Callable, Iterable

from genbench.errors import UsageError

Check = Callable[[Any, str], Any]


def keys(data: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse a key of ``data`` that is not in ``allowed`` (``where`` is the mapping's path, e.g. ``engine.``)."""
    allowed = set(allowed)
    for key in data:
        if key not in allowed:
            raise UsageError(f"{where}{key}", data[key], "known keys: " + ", ".join(sorted(allowed)))


def integer(value: Any, where: str, lo: int = 1, hi: int = 10**9) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(where, value, f"an integer >= {lo} and <= {hi}")
    return value


def number(value: Any, where: str, lo: float = 0.0, hi: float = 1e9, lo_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        raise UsageError(where, value, f"a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return float(value)


def text(value: Any, where: str, what: str = "a non-empty string", max_len: int = 4096) -> str:
    if not isinstance(value, str) or not value.strip() or "\x00" in value or len(value) > max_len:
        raise UsageError(where, value, what)
    return value


def choice(value: Any, where: str, allowed: Iterable[Any], listed_by: str = "") -> Any:
    """``value`` if it is one of ``allowed``; a long list is not echoed whole, only its nearest names."""
    allowed = tuple(allowed)
    try:
        ok = not isinstance(value, bool) and value in allowed
    except TypeError:  # unhashable, e.g. a list
        ok = False
    if not ok:
        raise UsageError(where, value, one_of_many(value, allowed, listed_by))
    return value


def one_of_many(value: Any, allowed: tuple, listed_by: str = "") -> Any:
    """What to say is allowed: the list itself when short, else its size and the nearest names."""
    if len(allowed) <= 8:
        return allowed
    import difflib

    near = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=3, cutoff=0.5) or [str(a) for a in allowed[:3]]
    return f"one of {len(allowed)} names, e.g. {', '.join(near)}" + (f" ({listed_by} lists them)" if listed_by else "")


def flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(where, value, "true or false")
    return value


def cidrs(value: Any, where: str) -> tuple[str, ...]:
    """A CIDR string or a list of them (``127.0.0.0/8``), each parsed by :mod:`ipaddress` as fetching will use it."""
    items = [value] if isinstance(value, str) else (value or [])
    if not isinstance(items, (list, tuple)) or len(items) > 1000:
        raise UsageError(where, value, "a list of CIDR networks such as 127.0.0.0/8")
    out = []
    for j, cidr in enumerate(items):
        try:
            if not isinstance(cidr, str):
                raise ValueError(cidr)
            out.append(str(ipaddress.ip_network(cidr, strict=False)))
        except ValueError:
            raise UsageError(f"{where}[{j}]", cidr, "a CIDR network such as 127.0.0.0/8") from None
    return tuple(out)


def shots(value: Any, where: str, hi: int = 1_000_000) -> tuple[int, ...]:
    """An int or a non-empty list of ints, each in [1, ``hi``]; returned sorted and unique (prefixes of one collection)."""
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > 1000:
        raise UsageError(where, value, f"an integer >= 1 and <= {hi}, or a non-empty list of them")
    return tuple(sorted({integer(v, where, 1, hi) for v in items}))


# Field checks as values, for declarative specs: ``option(25, ints(1, 1000))``.


def ints(lo: int = 1, hi: int = 10**9, optional: bool = False) -> Check:
    def check(value: Any, where: str) -> int | None:
        return None if optional and value is None else integer(value, where, lo, hi)

    return check


def nums(lo: float = 0.0, hi: float = 1e9, lo_open: bool = False) -> Check:
    return lambda value, where: number(value, where, lo, hi, lo_open)


def one_of(*allowed: Any) -> Check:
    return lambda value, where: choice(value, where, allowed)


def texts(what: str = "a non-empty string") -> Check:
    return lambda value, where: text(value, where, what)


def flags() -> Check:
    return flag
