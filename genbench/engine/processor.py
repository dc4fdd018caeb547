"""What a worker does with one shard task, as a plain class (no Ray), so tests can run it in-process.

A worker loads each model once (generator, CLIP, T5 enhancer, dataset splits are cached by reference) and then, per
shard: makes the samples, embeds them with CLIP, commits tar -> sidecar -> record, and returns per-class sums of the
normalised embeddings with counts, so the driver can form class centroids without a second pass over the images.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from genbench.catalog import get_dataset
from genbench.engine.plan import CollectionJob, ShardTask
from genbench.shards.manifest import invalidate
from genbench.shards.schema import decode_image
from genbench.shards.sidecar import class_sums
from genbench.shards.store import Store
from genbench.shards.writer import commit_shard

log = logging.getLogger(__name__)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ShardProcessor:
    def __init__(self, device: str | None = None, threads: int | None = None):
        import torch

        self.device = device or _device()
        if threads:
            torch.set_num_threads(int(threads))
        self._generators: dict[tuple, Any] = {}
        self._clips: dict[str, Any] = {}
        self._splits: dict[tuple, Any] = {}
        self._enhancers: dict[str, Any] = {}
        self._orders: dict = {}

    # ---- lazily loaded resources -------------------------------------------------------------
    def clip(self, ref: str, cache_dir: str | None = None):
        if ref not in self._clips:
            from genbench.models.clip import load_clip

            self._clips[ref] = load_clip(ref, device=self.device, cache_dir=cache_dir)
        return self._clips[ref]

    def generator(self, options: dict[str, Any], cache_dir: str | None = None):
        key = (options["generator"], options.get("dtype"), options.get("scheduler", "dpmsolver++"), options.get("compile", False))
        if key not in self._generators:
            from genbench.models.generator import load_generator

            self._generators[key] = load_generator(
                options["generator"],
                device=self.device,
                dtype=options.get("dtype"),
                cache_dir=cache_dir,
                scheduler=options.get("scheduler", "dpmsolver++"),
                compile=bool(options.get("compile", False)),
            )
        return self._generators[key]

    def split(self, dataset: str, split: str, data_root: str | None):
        key = (dataset, split, data_root)
        if key not in self._splits:
            from genbench.catalog.loaders import load_split

            self._splits[key] = load_split(get_dataset(dataset), split, data_root)
        return self._splits[key]

    def enhancer(self, ref: str, cache_dir: str | None):
        if ref not in self._enhancers:
            from genbench.prompts import CategoryEnhancer

            self._enhancers[ref] = CategoryEnhancer(ref, device=self.device, cache_dir=cache_dir)
        return self._enhancers[ref]

    # ---- work --------------------------------------------------------------------------------
    def make_samples(self, task: ShardTask) -> tuple[list, list]:
        job = task.job
        spec = get_dataset(job.dataset)
        members = task.members()
        opts = job.options
        if job.source == "original":
            from genbench.sources import original

            split = self.split(job.dataset, "train", job.data_root)
            return original.produce(
                split, job.dataset, spec.classes, members, job.run_seed,
                opts.get("image_format", "png"), int(opts.get("jpeg_quality", 95)), self._orders,
            )
        if job.source == "generated":
            from genbench import prompts
            from genbench.sources import generated

            strategy = opts["strategy"]
            enhancer = self.enhancer(opts.get("ce_model", "tiny"), job.cache_dir) if strategy == "ce" else None
            init = None
            if strategy == "tig":
                init = self._tig_init(job, spec)
            samples = generated.produce(
                self.generator(opts, job.cache_dir), spec, members, job.run_seed, strategy, opts,
                prompts.make_prompt, enhancer=enhancer, init_image=init,
            )
            return samples, []
        if job.source == "retrieved":
            from genbench.sources import retrieved
            from genbench.sources.staging import read_images, staging_dir_of

            slots = [(c, k, cand) for (c, k, cand) in task.payload]
            images = read_images(staging_dir_of(job.uri), {cand["url"]: cand["part"] for _, _, cand in slots}, job.storage_options)
            samples = retrieved.produce(
                job.dataset, spec.classes, slots, images, opts.get("image_size"),
                opts.get("image_format", "jpg"), int(opts.get("jpeg_quality", 95)),
            )
            filled = {(c, k) for c, k, _ in slots}
            return samples, [m for m in members if m not in filled]
        raise ValueError(f"no shard producer for source {job.source!r}")

    def _tig_init(self, job: CollectionJob, spec):
        from genbench.prompts import tig_init_index
        from genbench.sources.original import class_order

        split = self.split(job.dataset, "train", job.data_root)
        k = int(job.options.get("tig_shots", 16))

        def init_image(cls: int, shot: int):
            order = class_order(split, job.dataset, cls, job.run_seed, self._orders)[:k]
            if len(order) == 0:
                raise ValueError(f"TIG: class {cls} has no original image to start from")
            return split.image(int(order[tig_init_index(cls, shot, len(order), job.run_seed, job.dataset)]))

        return init_image

    def warm(self, job: CollectionJob) -> None:
        """Load what ``job`` needs before the clock starts, so device-seconds (and cost) do not depend on which
        worker made a collection's first shard."""
        if job.clip:
            self.clip(job.clip, job.cache_dir)
        if job.source == "generated":
            self.generator(job.options, job.cache_dir)
        if job.source == "original" or job.options.get("strategy") == "tig":
            self.split(job.dataset, "train", job.data_root)

    def run(self, task: ShardTask) -> dict[str, Any]:
        """Make, embed and commit one shard; returns its stats with per-class sums (classes present only)."""
        job = task.job
        self.warm(job)
        t0 = time.perf_counter()
        store = Store(job.uri, job.storage_options)
        # A stale record (e.g. of a partial shard that this run completes) goes first, so no record ever vouches
        # for a tar that is being replaced.
        invalidate(store, task.shard_id)
        samples, short = self.make_samples(task)
        embeddings = {}
        extra: dict[str, dict[str, np.ndarray]] = {}
        sums = counts = None
        if job.clip:
            clip = self.clip(job.clip, job.cache_dir)
            emb = clip.encode_images([decode_image(s.image) for s in samples]) if samples else np.zeros((0, clip.dim), np.float32)
            embeddings[clip.slug] = emb
            prompts = [s.meta.get("prompt") for s in samples]
            if samples and all(prompts):
                # CLIP score needs each image's cosine to its own prompt: computed here, once, while both are at hand.
                from genbench.prompt_weighting import plain_text

                text = clip.encode_texts([plain_text(p) for p in prompts])
                extra[clip.slug] = {"prompt_similarity": np.sum(emb * text, axis=1)}
            cls = np.array([s.cls for s in samples], dtype=np.int64)
            sums, counts = class_sums(cls, emb, job.num_classes)
        elapsed = time.perf_counter() - t0
        record = {
            "slot_start": task.slot_start,
            "slot_stop": task.slot_stop,
            "shortfall": [list(x) for x in short],
            "gpu_seconds": elapsed if self.device.startswith("cuda") else 0.0,
            "device_seconds": elapsed,
            "device": self.device,
            "pid": os.getpid(),
        }
        rec = commit_shard(store, task.shard_id, samples, embeddings, record, extra)
        result = {**rec, "label": task.label}
        if sums is not None:
            present = np.flatnonzero(counts)
            result.update(class_ids=present, sums=sums[present], counts=counts[present], clip_slug=next(iter(embeddings)))
        return result

    def embed_split(self, dataset: str, split: str, start: int, stop: int, clip_ref: str, data_root: str | None, cache_dir: str | None) -> np.ndarray:
        data = self.split(dataset, split, data_root)
        clip = self.clip(clip_ref, cache_dir)
        return clip.encode_images([data.image(i) for i in range(start, stop)])
