"""What a worker does with one shard task, as a plain class (no Ray), so tests can run it in-process.

The same three steps for every kind of source: the task's Source **produces** the samples (or, for a CLIP model
added to a finished shard, they are read back from its tar), CLIP **embeds** them, and the shard is **committed**
tar -> sidecar -> record. The result carries per-class sums of the normalised embeddings with counts, so the driver
forms class centroids without a second pass over the images.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np

from genbench.metrics.clipscore import PROMPT_SIMILARITY, prompt_similarity
from genbench.shards.manifest import invalidate
from genbench.shards.reader import read_samples
from genbench.shards.schema import Sample, class_caption, decode_image
from genbench.shards.store import Store
from genbench.shards.writer import commit_shard, commit_sidecars, stats_rel
from genbench.sources import registry
from genbench.sources.resources import Resources

log = logging.getLogger(__name__)

MAX_BAD_LISTED = 50  # unreadable inputs named in a shard's record (all of them are counted)


def embed_samples(clip: Any, samples: list[Sample]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(unit image embeddings, extra sidecar columns): the image-prompt similarity CLIP score needs, when every
    sample has a prompt."""
    if not samples:
        return np.zeros((0, clip.dim), np.float32), {}
    emb = clip.encode_images([decode_image(s.image) for s in samples])
    sim = prompt_similarity(clip, emb, [s.meta.get("prompt") for s in samples])
    return emb, ({PROMPT_SIMILARITY: sim} if sim is not None else {})


def caption_missing(samples: list[Sample], dataset: str) -> None:
    """Give a sample its class's first template as its caption where its source set none (a plugin source): trainers
    that read ``txt`` skip a sample without one."""
    if all(s.txt is not None for s in samples):
        return
    from genbench.catalog import get_dataset

    spec = get_dataset(dataset)
    for s in samples:
        if s.txt is None:
            s.txt = class_caption(spec.templates[0], spec.classes[s.cls])


class ShardProcessor:
    def __init__(self, device: str | None = None, threads: int | None = None):
        self.resources = Resources(device=device, threads=threads)

    @property
    def device(self) -> str:
        return self.resources.device

    def run(self, task: Any) -> dict[str, Any]:
        """Make (or embed), and commit one shard; returns its record with per-class sums (classes present only)."""
        job = task.job
        source = None if task.embed_only else registry.load(job.source_ref)
        if source is not None:
            source.warm(job, self.resources)  # models load before the clock starts: cost does not depend on the worker
        clip = self.resources.clip(job.clip, job.cache_dir) if job.clip else None
        t0, c0 = time.perf_counter(), time.process_time()
        store = Store(job.uri, job.storage_options)
        if task.embed_only:
            record = json.loads(store.read_bytes(stats_rel(task.name)))
            samples, short = read_samples(store, task.name), [tuple(x) for x in record.get("shortfall", [])]
        else:
            # A stale record (e.g. of a partial shard that this run completes) goes first, so no record ever vouches
            # for a tar that is being replaced.
            invalidate(store, task.shard_id)
            made = source.produce(task, self.resources)
            made.check(task.members(), job.source_ref)
            samples, short, bad = made.samples, made.shortfall, made.bad
            caption_missing(samples, job.dataset)
        embeddings, extra, models = {}, {}, {}
        if clip is not None:
            emb, columns = embed_samples(clip, samples)
            embeddings[clip.slug], extra[clip.slug] = emb, columns
            models[clip.slug] = {"model": clip.ref, "untrained": bool(clip.is_tiny)}
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        if task.embed_only:
            spent = float(record.get("embed_seconds", 0.0)) + elapsed
            rec, sums = commit_sidecars(store, record, samples, embeddings, extra, job.num_classes, models,
                                        embed_seconds=spent)
        else:
            record = {**self._timing(elapsed, cpu, task, short), "bad_samples": bad[:MAX_BAD_LISTED], "bad_count": len(bad)}
            rec, sums = commit_shard(store, task.shard_id, samples, embeddings, record, extra, job.num_classes, models)
        result = {**rec, "label": task.label, "embed_only": task.embed_only}
        if clip is not None:
            # The sums just committed beside the sidecar (int64 fixed point): the driver adds them as they are.
            class_ids, counts, fixed = sums[clip.slug]
            result.update(class_ids=class_ids, fixed=fixed, counts=counts, clip_slug=clip.slug)
        return result

    def _timing(self, elapsed: float, cpu: float, task: Any, short: list) -> dict[str, Any]:
        """The shard's time. On a CPU worker its cost is the CPU time the worker's process spent on it (all its
        threads): unlike wall time multiplied by threads, that does not grow when other work shares the machine. A GPU
        is held, and paid for, for the whole wall time."""
        gpu = self.resources.on_gpu
        return {
            "slot_start": task.slot_start,
            "slot_stop": task.slot_stop,
            "shortfall": [list(x) for x in short],
            "device": self.device,
            "device_seconds": elapsed,
            "gpu_seconds": elapsed if gpu else 0.0,
            "cpu_seconds": 0.0 if gpu else cpu,
            "pid": os.getpid(),
        }

    def adapt(self, job: Any, unit: int) -> dict[str, Any]:
        """Train and commit one unit (a class, or the whole dataset) of ``job``'s adaptation; returns its record."""
        from genbench.sources.adaptation import train_job_unit

        return train_job_unit(job, unit, self.resources)

    def release_training(self) -> int:
        """Drop the models only adaptation training needed (before generation takes the memory)."""
        from genbench.sources.adaptation import training_only

        return self.resources.release(training_only)

    def embed_split(self, dataset: str, split: str, start: int, stop: int, clip_ref: str, data_root: str | None,
                    cache_dir: str | None) -> np.ndarray:
        from genbench.embeddings import read_images

        data = self.resources.split(dataset, split, data_root)
        clip = self.resources.clip(clip_ref, cache_dir)
        return clip.encode_images(read_images(data, range(start, stop)))
