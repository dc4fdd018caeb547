"""Which records a figure draws: one series (a collection kind scored with one CLIP model) at one shot count, one
record per dataset, chosen by fixed rules so every report of the same records draws the same points.

Rules: the paper's CLIP model (ViT-B/32) when present, else the most common one; the strategy the paper's figures
use (DT) when present, else the series covering the most datasets; the shot count the paper uses for that figure
when present, else the one covering the most datasets (ties: the larger).
"""

from __future__ import annotations

import logging

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from genbench.models.refs import generator_slug
from genbench.report.paper import PAPER_CLIP, STRATEGY_LABELS, backbone
from genbench.report.tables import finite

PREFERRED_STRATEGIES = ("dt",)

log = logging.getLogger(__name__)


@dataclass
class Pick:
    source: str
    label: str  # e.g. "generated sd21-base/DT"
    clip: str | None
    shots: int
    by_dataset: dict[str, dict[str, Any]]
    untrained: bool = False
    series_records: list[dict[str, Any]] = field(default_factory=list)  # every shot count of the series

    def shot_counts(self) -> set[int]:
        return {int(r["shots"]) for r in self.series_records}

    def datasets_at(self, shots: int) -> set[str]:
        return {r["dataset"] for r in self.series_records if int(r["shots"]) == shots}

    def at(self, shots: int) -> Pick:
        """The same series at ``shots`` (one record per dataset)."""
        by_dataset = {r["dataset"]: r for r in self.series_records if int(r["shots"]) == shots}
        return Pick(self.source, self.label, self.clip, shots, by_dataset, self.untrained, self.series_records)


def strategy_label(strategy: str | None) -> str:
    return STRATEGY_LABELS.get(str(strategy), str(strategy)) if strategy else ""


def gen_slug(generator: str | None) -> str | None:
    return generator_slug(generator) if generator else None


def row_label(rec: dict[str, Any]) -> str:
    """How a series is named in figures: source, then generator and strategy (as Table 2 names them) if any."""
    detail = " ".join(p for p in (gen_slug(rec.get("generator")), strategy_label(rec.get("strategy"))) if p)
    return f"{rec['source']} {detail}".strip()


def _most_common(values: Iterable[Any], prefer: Any = None) -> Any:
    counts = Counter(values)
    if not counts:
        return None
    if prefer is not None and prefer in counts:
        return prefer
    return max(counts, key=lambda v: (counts[v], str(v)))


def pick_clip(records: list[dict[str, Any]], clip: str | None = None) -> str | None:
    """``clip`` if given, else the paper's backbone when some record uses it, else the most common CLIP model."""
    if clip is not None:
        return clip
    clips = [r.get("clip") for r in records]
    paper = sorted({c for c in clips if backbone(c) == PAPER_CLIP}, key=str)
    return paper[0] if paper else _most_common(clips)


def has(rec: dict[str, Any], *scores: str) -> bool:
    return all(finite(rec["scores"].get(s)) is not None for s in scores)


def pick(records: list[dict[str, Any]], source: str, prefer_shots: tuple[int, ...] = (), clip: str | None = None,
         needs: tuple[str, ...] = ("cler",), strategy: str | None = None) -> Pick | None:
    """One series of ``source`` at one shot count, its records by dataset (only records with every score in
    ``needs``); None when no record qualifies."""
    recs = [r for r in records if r.get("source") == source and has(r, *needs)]
    chosen_clip = pick_clip(recs, clip)
    recs = [r for r in recs if r.get("clip") == chosen_clip]
    if strategy is not None:
        recs = [r for r in recs if r.get("strategy") == strategy]
    if not recs:
        return None
    labels = {row_label(r) for r in recs}
    preferred = [lab for lab in sorted(labels)
                 if any(row_label(r) == lab and r.get("strategy") in PREFERRED_STRATEGIES for r in recs)]
    # the preferred strategy when present; among candidates, the series covering the most datasets (then by name)
    candidates = preferred or sorted(labels)
    label = max(candidates, key=lambda lab: (len({r["dataset"] for r in recs if row_label(r) == lab}),
                                             -candidates.index(lab)))
    series = [r for r in recs if row_label(r) == label]
    per_shots = Counter()
    for k in {(r["dataset"], int(r["shots"])) for r in series}:
        per_shots[k[1]] += 1
    shots = next((s for s in prefer_shots if s in per_shots), None)
    if shots is None:
        shots = max(per_shots, key=lambda s: (per_shots[s], s))
    by_dataset = {r["dataset"]: r for r in series if int(r["shots"]) == shots}
    from genbench.report.records import untrained

    return Pick(source, label, chosen_clip, shots, by_dataset, any(untrained(r) for r in series), series)


def shared_shots(picks: list[Pick], prefer: tuple[int, ...] = ()) -> tuple[int | None, list[Pick]]:
    """The one shot count a figure compares ``picks`` at, and the picks that have it (moved to it).

    The first of ``prefer`` that every pick has; else, among the counts every pick has, the one whose worst-covered
    pick has the most datasets (ties: the larger count). When no count is shared by all, the count the most picks have
    (ties: most datasets, then the larger), and the picks without it are left out: a figure never mixes shot counts.
    """
    if not picks:
        return None, []
    common = set.intersection(*(p.shot_counts() for p in picks))
    shots = next((k for k in prefer if k in common), None)
    if shots is None and common:
        shots = max(common, key=lambda k: (min(len(p.datasets_at(k)) for p in picks), k))
    if shots is None:
        counts = Counter(k for p in picks for k in p.shot_counts())
        shots = max(counts, key=lambda k: (counts[k], sum(len(p.datasets_at(k)) for p in picks), k))
    return shots, [p.at(shots) for p in picks if shots in p.shot_counts()]


def gain(rec: dict[str, Any], score: str = "cler") -> float | None:
    """Points of ``score`` over CLIP zero-shot on the same test split."""
    s, z = finite(rec["scores"].get(score)), finite(rec["scores"].get("zeroshot"))
    return None if s is None or z is None else s - z


def mts_by_dataset(records: list[dict[str, Any]], clip: str | None = None) -> dict[str, float]:
    """Each dataset's mean text similarity, from its retrieved collection's record. MTS is a property of the class
    names, the caption index and the CLIP model that embedded the queries (not of the shot count), so records made with
    ``clip`` are preferred; among the rest the choice is fixed by the collection's name, whatever order the results
    were read in, and a dataset whose retrievals disagree is logged."""
    found: dict[str, list[tuple[bool, str, float]]] = {}
    for r in records:
        v = finite(r.get("mts"))
        if v is not None and r.get("source") == "retrieved":
            found.setdefault(r["dataset"], []).append((r.get("clip") != clip, str(r.get("collection") or ""), v))
    out: dict[str, float] = {}
    for dataset, options in found.items():
        options.sort()
        out[dataset] = options[0][2]
        if len({round(v, 6) for _, _, v in options}) > 1:
            log.warning("report: %s has retrievals with different MTS (%s); Fig. 6 uses %s's", dataset,
                        ", ".join(f"{v:.4f}" for _, _, v in options[:4]), options[0][1] or "the first")
    return out
