"""What a worker holds between shards: loaded models and opened dataset splits, each loaded once and then reused.

One :class:`Resources` lives in each worker process (and one in the driver, for its CLIP model). Sources ask it for
what they need; a source of a new kind keeps its own loaded things with :meth:`Resources.cached`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

log = logging.getLogger(__name__)


def quiet_model_loading() -> None:
    """No model-loading progress bars or info lines in a worker: from every worker they would drown the driver's own
    progress bar."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    try:
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        dlog.disable_progress_bar()
        tlog.disable_progress_bar()
    except ImportError:
        pass


class Resources:
    """Per-process cache of loaded models and data. ``device`` None means the GPU if there is one, else the CPU."""

    def __init__(self, device: str | None = None, threads: int | None = None):
        from genbench.models.device import resolve_device

        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self.device = str(resolve_device(device))
        self.threads = int(threads) if threads else None
        self._loaded: dict[tuple, Any] = {}

    def cached(self, key: tuple, make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``key`` is asked for, the same object after that."""
        if key not in self._loaded:
            self._loaded[key] = make()
        return self._loaded[key]

    def release(self, match: Callable[[tuple], bool]) -> int:
        """Drop what ``match(key)`` selects (models a stage no longer needs) and free the GPU memory they held;
        returns how many were dropped."""
        gone = [k for k in self._loaded if match(k)]
        for k in gone:
            del self._loaded[k]
        if gone:
            import gc

            gc.collect()
            if self.on_gpu:
                import torch

                torch.cuda.empty_cache()
        return len(gone)

    def clip(self, ref: str, cache_dir: str | None = None) -> Any:
        """A :class:`genbench.models.clip.ClipEncoder`."""

        def make() -> Any:
            from genbench.models.clip import load_clip

            return load_clip(ref, device=self.device, cache_dir=cache_dir)

        return self.cached(("clip", ref), make)

    def generator(self, ref: str, dtype: str | None, scheduler: str, compile: bool, cache_dir: str | None,
                  ip_adapter: str | None = None, instance: str = "") -> Any:
        """A :class:`genbench.models.generator.ImageGenerator`; with ``ip_adapter`` (a weights file) a pipeline of its
        own that takes image prompts (an IP-Adapter changes the UNet's attention, so it is never shared with plain
        text-to-image). ``instance``: a pipeline of its own under that name (an adaptation's learned tokens and
        adapters stay out of every other collection's pipeline)."""

        def make() -> Any:
            from genbench.models.generator import load_generator

            return load_generator(ref, device=self.device, dtype=dtype, cache_dir=cache_dir, scheduler=scheduler,
                                  compile=compile, ip_adapter=ip_adapter)

        key = ("generator", ref, dtype, scheduler, compile) + ((ip_adapter,) if ip_adapter else ()) + (
            (instance,) if instance else ())
        return self.cached(key, make)

    def enhancer(self, ref: str, cache_dir: str | None) -> Any:
        """A :class:`genbench.prompts.enhance.CategoryEnhancer` (the CE strategy's T5 model)."""

        def make() -> Any:
            from genbench.prompts.enhance import CategoryEnhancer

            return CategoryEnhancer(ref, device=self.device, cache_dir=cache_dir)

        return self.cached(("enhancer", ref), make)

    def split(self, dataset: str, split: str, data_root: str | None) -> Any:
        """A catalog dataset's split (:class:`genbench.catalog.loaders.base.SplitData`)."""

        def make() -> Any:
            from genbench.catalog import get_dataset
            from genbench.catalog.loaders import load_split

            return load_split(get_dataset(dataset), split, data_root)

        return self.cached(("split", dataset, split, data_root), make)

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")
