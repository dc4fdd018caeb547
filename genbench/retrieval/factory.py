"""Which faiss index fits a memory budget: resident-size estimates of factory strings, and the factory genbench
chooses for a budget (exact search when it fits, else IVF-PQ, re-ranked where there is room)."""

from __future__ import annotations

import re

import numpy as np

from genbench.errors import UsageError

FACTORY_FORMS = ("None/'Flat', 'IVF<n>,Flat', 'IVF<n>,PQ<m>[x<bits>]', 'IVF<n>,SQ8', 'IVF<n>_HNSW<M>,PQ<m>', 'HNSW<M>', "
                 "'PQ<m>', 'OPQ<m>,...', any of these + ',Refine(SQfp16|SQ8|Flat)' or ',RFlat'")


def estimate_bytes(factory: str, count: int, dim: int) -> int:
    """Approximate resident bytes of a faiss index built with ``factory`` over ``count`` vectors of ``dim``.

    Covers the forms in :data:`FACTORY_FORMS`; anything else is a UsageError (we will not guess a budget)."""
    parts = [p.strip() for p in factory.split(",") if p.strip()]
    if len(parts) > 1 and (rm := re.fullmatch(r"Refine\((Flat|SQfp16|SQ8)\)|RFlat", parts[-1])):
        per = {"Flat": dim * 4, None: dim * 4, "SQfp16": dim * 2, "SQ8": dim}[rm.group(1)]  # the refine codes
        return int(estimate_bytes(",".join(parts[:-1]), count, dim) + count * per)
    if parts and re.fullmatch(r"OPQ\d+(_\d+)?", parts[0]):
        parts = parts[1:]  # the rotation matrix is small: dim x dim floats
        extra = dim * dim * 4
    else:
        extra = 0
    if parts in ([], ["Flat"]):
        return extra + count * dim * 4
    if len(parts) == 1 and (m := re.fullmatch(r"HNSW(\d+)(,Flat)?", parts[0])):
        links = int(m.group(1))
        return extra + count * (dim * 4 + links * 2 * 4 * 1.1)  # level-0 has 2M links; upper levels ~ +10%
    if len(parts) == 1 and (m := re.fullmatch(r"PQ(\d+)(?:x(\d+))?", parts[0])):
        return extra + count * _pq_bytes(int(m.group(1)), m.group(2))
    m = re.fullmatch(r"IVF(\d+)(?:_HNSW(\d+))?", parts[0]) if len(parts) == 2 else None
    if m:
        nlist = int(m.group(1))
        coarse = nlist * dim * 4 + (nlist * int(m.group(2)) * 2 * 4 if m.group(2) else 0)
        enc = parts[1]
        if enc == "Flat":
            per = dim * 4
        elif pm := re.fullmatch(r"PQ(\d+)(?:x(\d+))?", enc):
            per = _pq_bytes(int(pm.group(1)), pm.group(2))
        elif sq := re.fullmatch(r"SQ(8|4|6|fp16)", enc):
            per = {"8": dim, "4": dim / 2, "6": dim * 6 / 8, "fp16": dim * 2}[sq.group(1)]
        else:
            raise UsageError("factory", factory, f"a factory genbench can size: {FACTORY_FORMS}")
        return int(extra + coarse + count * (per + 8))  # + int64 id per vector in the inverted lists
    raise UsageError("factory", factory, f"a factory genbench can size: {FACTORY_FORMS}")


def _pq_bytes(m: int, bits: str | None) -> float:
    return m * int(bits or 8) / 8


def choose_factory(count: int, dim: int, memory_budget_bytes: int | None) -> str:
    """Exact ``Flat`` when it fits (or no budget is given), else the richest IVF-PQ that fits, preferring PQ candidates
    re-ranked by a refine stage (float16, then 8-bit codes of every vector): PQ alone orders close neighbours wrongly,
    and the recall target is then reached only by scanning most of the index.

    nlist ~ sqrt(count) as a power of two (training cost grows with it; the recall target sets nprobe), capped so that
    each list has >= 39 training points."""
    if memory_budget_bytes is None or estimate_bytes("Flat", count, dim) <= memory_budget_bytes:
        return "Flat"
    nlist = int(2 ** round(np.log2(max(16.0, np.sqrt(count)))))
    nlist = max(1, min(nlist, 65536, count // 39))
    m_refined = next(m for m in (dim // 8, dim // 4, dim // 2, dim) if m >= 1 and dim % m == 0)
    candidates = [f"IVF{nlist},PQ{m_refined},Refine({r})" for r in ("SQfp16", "SQ8")]
    candidates += [f"IVF{nlist},PQ{m}" for m in (dim // 4, 64, 32, 16, 8, 4) if 0 < m and dim % m == 0]
    for factory in candidates:
        if estimate_bytes(factory, count, dim) <= memory_budget_bytes:
            return factory
    raise UsageError(
        "memory_budget_bytes",
        memory_budget_bytes,
        f"at least {estimate_bytes(f'IVF{nlist},PQ4', count, dim)} bytes for {count} vectors of dim {dim} (IVF{nlist},PQ4)",
    )
