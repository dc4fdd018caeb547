"""Retrieved data: downloaded candidates assigned to (class, shot) slots, decoded, resized and encoded as samples.

Slot assignment happens once the downloads are known: shot k of class c is the k-th candidate of c (by caption
similarity) whose download succeeded. Given the same download outcomes (cached in the collection's staging area)
every rerun assigns the same URL to the same slot, so shard identity is deterministic and nothing is fetched twice.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from genbench.shards.schema import Sample, encode_image


def fit_image(data: bytes, size: int | None) -> Image.Image:
    """Decode and, when ``size`` is set, resize so the shorter side is ``size`` and centre-crop to a square."""
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
    if size:
        w, h = img.size
        scale = size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return img


def produce(
    dataset: str,
    class_names: tuple[str, ...],
    slots: list[tuple[int, int, dict[str, Any]]],
    images: dict[str, bytes],
    image_size: int | None,
    image_format: str = "jpg",
    quality: int = 95,
) -> list[Sample]:
    """Samples for ``slots`` = [(cls, shot, {url, caption, similarity, id})], bytes looked up in ``images`` by URL."""
    samples = []
    for cls, shot, cand in slots:
        image = fit_image(images[cand["url"]], image_size)
        meta = {
            "dataset": dataset,
            "source": "retrieved",
            "class_name": class_names[cls],
            "url": cand["url"],
            "caption": cand["caption"],
            "similarity": round(float(cand["similarity"]), 6),
            "index_id": int(cand["id"]),
        }
        samples.append(Sample(cls, shot, encode_image(image, image_format, quality), image_format, meta))
    return samples
