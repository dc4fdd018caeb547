"""Which downloaded URL fills which (class, shot) slot of a retrieved collection.

Shot k of class c is, the first time it is assigned, the best-ranked candidate of c (by caption similarity) that
arrived and fills no other slot. Once assigned, a slot keeps its URL on every later run while that URL's image is in
the cache: a URL that arrives later (a host that was down) only fills slots that were still empty. So a shard made
twice holds the same images, and no URL ever lands in two slots.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Iterable

from genbench.retrieval.query import RetrievalPlan

Slot = tuple[int, int]


def assign_slots(plan: RetrievalPlan, arrived: Iterable[str], previous: dict[Slot, dict[str, Any]],
                 shots: int) -> dict[Slot, dict[str, Any]]:
    """(class, shot) -> candidate {url, caption, similarity, id} for every slot below ``shots`` that can be filled."""
    ok = set(arrived)
    slots: dict[Slot, dict[str, Any]] = {}
    for entry in plan.classes:
        c = entry.cls
        kept = {k: cand for (cc, k), cand in previous.items() if cc == c and k < shots and cand["url"] in ok}
        used = {cand["url"] for cand in kept.values()}
        free = (asdict(x) for x in entry.candidates if x.url in ok and x.url not in used)
        for k in range(shots):
            cand = kept.get(k) or next(free, None)
            if cand is not None:
                slots[(c, k)] = cand
    return slots


def short_classes(slots: dict[Slot, dict[str, Any]], num_classes: int, shots: int) -> dict[int, int]:
    """Classes with fewer than ``shots`` filled slots, and how many they have."""
    have = [0] * num_classes
    for c, _ in slots:
        have[c] += 1
    return {c: n for c, n in enumerate(have) if n < shots}


def payload(slots: dict[Slot, dict[str, Any]], members: list[Slot], parts: dict[str, str]) -> tuple:
    """A shard task's per-slot inputs: (cls, shot, candidate + the staging part holding its bytes) for each of its
    ``members`` (from ``Layout.slots``) that is filled, in write order."""
    return tuple((c, k, {**slots[(c, k)], "part": parts[slots[(c, k)]["url"]]}) for c, k in members if (c, k) in slots)
