"""Per-class text-to-text retrieval over a caption index, cross-class deduplication, and mean text similarity (MTS).

Query per class (as the paper: the category name with the dataset's templates): every template formatted with the class
name, plus the bare name, is embedded; the query is the normalised MEAN of those embeddings -- one vector per class, built
the way the zero-shot classifier is, so a caption that matches the class under any phrasing scores well. (The
alternative, a top-k per template merged afterwards, favours captions that echo one template's wording.)

Candidates: ``shots * oversample`` per class (so classes still fill after dead links), ordered by cosine similarity.
A URL that several classes retrieve is kept by the most similar class only (ties: the lower class index) and recorded
in ``conflicts``. A URL that appears twice for one class (LAION repeats URLs with different captions) is kept once.

MTS (Fig. 6 of the paper): per class the mean cosine similarity of the top ``mts_k`` (10) search results, taken before
deduplication (it describes how well the pool covers the class, not which class won a shared URL); per dataset the mean
over classes. Values are cosines in [-1, 1]; multiply by 100 for the percent scale of results.json scores.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from genbench.errors import UsageError
from genbench.retrieval.index import CaptionIndex
from genbench.vectors import normalise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    url: str
    caption: str
    similarity: float
    id: int


@dataclass
class ClassCandidates:
    """One class: candidates best first (after dedup), and the raw top similarities used for MTS."""

    cls: int
    name: str
    candidates: list[Candidate]
    top_similarities: list[float]


@dataclass(frozen=True)
class Conflict:
    url: str
    classes: list[int]
    similarities: list[float]
    winner: int


@dataclass
class RetrievalPlan:
    """What to download: per class an ordered candidate list, plus the cross-class URL conflicts (for the manifest)."""

    shots: int
    oversample: float
    clip: str
    classes: list[ClassCandidates]
    conflicts: list[Conflict] = field(default_factory=list)

    def url_table(self) -> pa.Table:
        """One row per candidate -- cls, rank (0 = most similar), url, caption, similarity, id -- the input table of
        the download pipeline."""
        rows = [(c.cls, r, cand.url, cand.caption, cand.similarity, cand.id) for c in self.classes for r, cand in enumerate(c.candidates)]
        cols = list(zip(*rows)) if rows else [[]] * 6
        return pa.table(
            {
                "cls": pa.array(cols[0], pa.int32()),
                "rank": pa.array(cols[1], pa.int32()),
                "url": pa.array(cols[2], pa.string()),
                "caption": pa.array(cols[3], pa.string()),
                "similarity": pa.array(cols[4], pa.float32()),
                "id": pa.array(cols[5], pa.int64()),
            }
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary for the collection manifest (no candidate lists: those are the url table)."""
        per_class, mts = mean_text_similarity(self)
        return {
            "shots": self.shots,
            "oversample": self.oversample,
            "clip": self.clip,
            "candidates_per_class": [len(c.candidates) for c in self.classes],
            "mts_per_class": per_class,
            "mts": mts,
            "conflicts": [asdict(c) for c in self.conflicts],
        }


def class_query_texts(name: str, templates: Sequence[str]) -> list[str]:
    """The texts whose mean embedding is the class query: each template with the name, then the bare name."""
    return [t.format(name) for t in templates] + [name]


def class_queries(clip: Any, classes: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(C, D) normalised query vectors, one per class (mean over :func:`class_query_texts`)."""
    per = [class_query_texts(n, templates) for n in classes]
    flat = [t for texts in per for t in texts]
    emb = normalise(np.asarray(clip.encode_texts(flat), dtype=np.float32))
    out, pos = [], 0
    for texts in per:
        out.append(emb[pos : pos + len(texts)].mean(axis=0))
        pos += len(texts)
    return np.ascontiguousarray(normalise(np.stack(out)), dtype=np.float32)


def retrieve(
    index: CaptionIndex,
    clip: Any,
    classes: Sequence[str],
    templates: Sequence[str],
    shots: int,
    *,
    oversample: float = 2.0,
    mts_k: int = 10,
) -> RetrievalPlan:
    """Build a :class:`RetrievalPlan` for ``classes`` (a dataset's class names; pass ``spec.classes, spec.templates``)."""
    if shots < 1:
        raise UsageError("shots", shots, "an integer >= 1")
    if not oversample >= 1:
        raise UsageError("oversample", oversample, "a number >= 1 (candidates per shot)")
    if not templates:
        raise UsageError("templates", templates, "at least one template containing {}")
    queries = class_queries(clip, classes, templates)
    want = int(np.ceil(shots * oversample))
    # Search deeper than we keep: dedup removes shared URLs, and MTS needs mts_k results whatever shots is.
    sims, ids = index.search(queries, max(want * 2, mts_k))
    return plan_from_search(index, classes, sims, ids, shots, oversample, mts_k, clip_ref=getattr(clip, "ref", ""))


def plan_from_search(
    index: CaptionIndex,
    classes: Sequence[str],
    sims: np.ndarray,
    ids: np.ndarray,
    shots: int,
    oversample: float,
    mts_k: int = 10,
    clip_ref: str = "",
) -> RetrievalPlan:
    """Deduplicate search results (C, k) into a plan. Split from :func:`retrieve` so a cluster can search in a batch."""
    want = int(np.ceil(shots * oversample))
    hits: list[list[Candidate]] = []
    for c in range(len(classes)):
        rows = index.metadata(ids[c])
        by_id = {r["id"]: r for r in rows}
        seen: set[str] = set()
        cands = []
        for s, i in zip(sims[c], ids[c]):
            r = by_id.get(int(i))
            if r is None or not r["url"] or r["url"] in seen:
                continue
            seen.add(r["url"])
            cands.append(Candidate(r["url"], r["caption"], float(s), int(i)))
        hits.append(cands)

    best: dict[str, tuple[float, int]] = {}  # url -> (similarity, class) of its best claim
    claims: dict[str, list[tuple[int, float]]] = {}
    for c, cands in enumerate(hits):
        for cand in cands:
            claims.setdefault(cand.url, []).append((c, cand.similarity))
            prev = best.get(cand.url)
            if prev is None or cand.similarity > prev[0]:  # strict: an equal later class does not take it (ties -> lower index)
                best[cand.url] = (cand.similarity, c)
    conflicts = [
        Conflict(url, [c for c, _ in cl], [round(s, 6) for _, s in cl], best[url][1]) for url, cl in claims.items() if len(cl) > 1
    ]
    out = []
    for c, cands in enumerate(hits):
        kept = [x for x in cands if best[x.url][1] == c][:want]
        if len(kept) < shots:
            log.warning("class %d (%s): only %d candidates for %d shots after dedup", c, classes[c], len(kept), shots)
        out.append(ClassCandidates(c, classes[c], kept, [float(s) for s in sims[c][ids[c] >= 0][:mts_k]]))
    if conflicts:
        log.info("%d URLs retrieved by several classes; each kept by its most similar class", len(conflicts))
    return RetrievalPlan(shots, oversample, clip_ref, out, conflicts)


def mean_text_similarity(plan: RetrievalPlan) -> tuple[list[float], float]:
    """(per-class MTS, dataset MTS): mean of each class's top similarities, then the mean over classes."""
    per_class = [float(np.mean(c.top_similarities)) if c.top_similarities else float("nan") for c in plan.classes]
    finite = [v for v in per_class if np.isfinite(v)]
    return per_class, float(np.mean(finite)) if finite else float("nan")
