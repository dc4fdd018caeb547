"""Retrieved data: per-class text-to-text search in a caption index, downloads into the collection's cache, and
downloaded images assigned to (class, shot) slots, then decoded, resized and encoded as samples.

The driver plans (:meth:`RetrievedSource.plan_slots`): query the index with the run's CLIP text encoder, download the
candidates not cached yet (the engine hands in a function that runs the downloads on the cluster), assign arrived URLs
to slots (:mod:`genbench.retrieval.assign`, stable across runs) and attach each shard's slots to its task. A worker
produces: it reads its URLs' bytes from the cache, never from the network.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from genbench import validate
from genbench.models.refs import index_slug
from genbench.retrieval import staging
from genbench.errors import UsageError
from genbench.retrieval.policy import FetchPolicy, parse_policy
from genbench.retrieval.resize import RESIZE_MODES, Resizer
from genbench.shards.schema import IMAGE_FORMATS, Sample, encode_image
from genbench.sources.base import (
    CheckContext,
    PlanContext,
    ShardSamples,
    SlotPlan,
    Source,
    SourceSpec,
    option,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RetrievedSpec(SourceSpec):
    """A caption index to search (``genbench index build``) and how to fetch and store what it finds."""

    index: str = option(check=validate.texts("the directory (or fsspec URL) of a caption index"), identity=False,
                        help="the directory of a caption index built with `genbench index build`")
    index_id: str = option("", token="", identity=False, internal=True)
    oversample: float = option(3.0, validate.nums(1.0, 100.0), token="os{}", always=True)
    image_size: int | None = option(None, validate.ints(8, 4096, optional=True), token="px{}", always=True)
    image_format: str = option("jpg", validate.one_of(*IMAGE_FORMATS), token="{}", always=True)
    jpeg_quality: int = option(95, validate.ints(1, 100), token="q{}", always=True)
    allow_addresses: tuple[str, ...] = option((), validate.cidrs, identity=False)
    fetch: dict[str, Any] | None = option(None, identity=False)
    resize_mode: str | None = option(None, validate.one_of(*RESIZE_MODES), token="rm-{}",
                                     help="img2dataset's resize modes (OpenCV); unset: shorter side to image_size "
                                          "and centre crop (PIL, bicubic)")
    resize_only_if_bigger: bool = option(False, validate.flags(), token="only-bigger",
                                         when=lambda s: s.resize_mode is not None)
    images_from: str = option("", validate.texts("the output folder of an img2dataset download (webdataset)"),
                              token="i2d", help="read candidates' images from an img2dataset download, never fetch")

    def policy(self, where: str = "fetch") -> FetchPolicy:
        return parse_policy(self.fetch, where, self.allow_addresses)

    def validate(self, where: str, datasets: tuple[str, ...]) -> None:
        self.policy(f"{where}.fetch")
        if self.resize_mode not in (None, "no") and not self.image_size:
            raise UsageError(f"{where}.image_size", self.image_size,
                             f"a size in pixels (resize_mode {self.resize_mode!r} resizes to it)")

    def resizer(self) -> Any:
        """How a downloaded image becomes a sample's pixels (an RGB PIL image)."""
        if self.resize_mode is None:
            return lambda data: fit_image(data, self.image_size)
        resize = Resizer(self.image_size or 0, self.resize_mode, self.resize_only_if_bigger)
        return lambda data: Image.fromarray(resize(data))

    def identity_options(self) -> dict[str, Any]:
        # An index built before indexes recorded an id is identified by its path, as collections from it always were.
        return {"index": self.index_id or self.index, **super().identity_options()}

    def base_name(self) -> str:
        return f"{index_slug(self.index)}-{self.index_id[:8]}" if self.index_id else index_slug(self.index)


class RetrievedSource(Source):
    kind = "retrieved"
    spec_type = RetrievedSpec

    def check(self, spec: RetrievedSpec, where: str, ctx: CheckContext) -> None:
        from genbench.retrieval.index import check_built_with, read_info

        info = read_info(spec.index, ctx.storage_options, f"{where}.index")
        check_built_with(info, ctx.clip, ctx.clip_slug, f"{where}.index", spec.index)
        if spec.images_from:
            from genbench.retrieval.from_download import check_download

            check_download(spec.images_from, ctx.storage_options, f"{where}.images_from")

    def resolve(self, spec: RetrievedSpec, ctx: CheckContext) -> RetrievedSpec:
        from genbench.retrieval.index import read_info

        index = spec.index if "://" in spec.index else os.path.abspath(spec.index)
        info = read_info(index, ctx.storage_options)
        images_from = spec.images_from
        if images_from and "://" not in images_from:
            images_from = os.path.abspath(images_from)
        return replace(spec, index=index, index_id=info.id, images_from=images_from)

    def plan_slots(self, job: Any, pending: list[Any], done: list[tuple[Any, dict[str, Any]]],
                   ctx: PlanContext) -> SlotPlan:
        from genbench.catalog import get_dataset
        from genbench.retrieval.assign import assign_slots, payload, short_classes
        from genbench.retrieval.from_download import download_digest, import_from_download
        from genbench.retrieval.index import open_index
        from genbench.retrieval.query import mean_text_similarity, retrieve

        spec: RetrievedSpec = job.spec
        where = staging.staging_dir_of(job.uri)
        dataset = get_dataset(job.dataset)
        # The paper prices retrieval by its text-to-text search: the query's CPU time is part of the cost.
        q_cpu, q_wall = time.process_time(), time.perf_counter()
        index = open_index(spec.index, storage_options=job.storage_options)
        plan = retrieve(index, ctx.clip, dataset.classes, dataset.templates, job.shots, oversample=spec.oversample)
        query = {"cpu_seconds": time.process_time() - q_cpu, "wall_s": round(time.perf_counter() - q_wall, 3)}
        wanted = list(dict.fromkeys(plan.url_table().column("url").to_pylist()))
        policy = spec.policy()
        digest = (download_digest(spec.images_from, job.storage_options, policy) if spec.images_from
                  else policy.digest())
        outcomes = staging.read_outcomes(where, job.storage_options, digest)
        todo = [u for u in wanted if u not in outcomes or not outcomes[u].final]
        t0 = time.perf_counter()
        if todo and spec.images_from:
            log.info("%s: reading %d candidate URL(s) from %s (%d cached)", job.uri, len(todo), spec.images_from,
                     len(wanted) - len(todo))
            import_from_download(todo, spec.images_from, where, policy, job.storage_options)
            outcomes = staging.read_outcomes(where, job.storage_options, digest)
        elif todo:
            log.info("%s: downloading %d candidate URL(s) (%d cached)", job.uri, len(todo), len(wanted) - len(todo))
            ctx.download(todo, where, dataclasses.asdict(policy), job.storage_options, ctx.progress)
            outcomes = staging.read_outcomes(where, job.storage_options, digest)
        wall = time.perf_counter() - t0

        arrived = [u for u in wanted if u in outcomes and outcomes[u].ok]
        slots = assign_slots(plan, arrived, staging.read_assignment(where, job.storage_options), job.shots)
        staging.write_assignment(where, slots, job.storage_options)
        parts = {u: outcomes[u].part for u in arrived}
        tasks = [replace(t, payload=payload(slots, t.members(), parts)) for t in pending]
        # A finished shard with empty slots that can now be filled (a host came back) is made again.
        redo = [replace(t, payload=payload(slots, t.members(), parts)) for t, record in done
                if any(tuple(s) in slots for s in _short_not_bad(record))]

        short = short_classes(slots, job.num_classes, job.shots)
        if short:
            log.warning("%s: %d class(es) stay short after dead links: %s", job.uri, len(short),
                        ", ".join(f"{c}: {k}/{job.shots}" for c, k in sorted(short.items())[:10]))
        kinds = Counter(outcomes[u].kind for u in wanted if u in outcomes)
        per_class, mts = mean_text_similarity(plan)
        extras = {
            "retrieval": {**plan.to_json(), "download_wall_s": round(wall, 3)},
            "fetch": {"candidates": len(wanted), "kinds": dict(sorted(kinds.items())),
                      "cpu_seconds": float(sum(outcomes[u].cpu_s for u in wanted if u in outcomes))},
            "query": query,
            "short_classes": {str(c): k for c, k in sorted(short.items())},
            "mts": mts,
            "mts_per_class": per_class,
        }
        return SlotPlan(tasks, redo, extras)

    def produce(self, task: Any, resources: Any) -> ShardSamples:
        from genbench.catalog import get_dataset

        job, spec = task.job, task.job.spec
        slots = list(task.payload)
        images = staging.read_images(staging.staging_dir_of(job.uri), {cand["url"]: cand["part"] for _, _, cand in slots},
                                     job.storage_options)
        names = get_dataset(job.dataset).classes
        out = ShardSamples([])
        fit = spec.resizer()
        for cls, shot, cand in slots:
            try:
                image = fit(images[cand["url"]])
            except Exception as exc:  # verified when downloaded; a bad file in the cache is skipped, not fatal
                out.skip((cls, shot), cand["url"], exc)
                continue
            meta = {
                "dataset": job.dataset,
                "source": "retrieved",
                "class_name": names[cls],
                "url": cand["url"],
                "caption": cand["caption"],
                "similarity": round(float(cand["similarity"]), 6),
                "index_id": int(cand["id"]),
            }
            out.samples.append(Sample(cls, shot, encode_image(image, spec.image_format, spec.jpeg_quality),
                                      spec.image_format, meta, txt=str(cand["caption"])))
        filled = {(c, k) for c, k, _ in slots}
        out.shortfall = [m for m in task.members() if m not in filled or m in set(out.shortfall)]
        return out


def _short_not_bad(record: dict[str, Any]) -> set[tuple[int, int]]:
    """A finished shard's empty slots, less those whose cached image was unreadable (refilling them would fail again)."""
    bad = {tuple(b["slot"]) for b in record.get("bad_samples", []) if isinstance(b, dict) and "slot" in b}
    return {tuple(s) for s in record.get("shortfall", [])} - bad


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
