"""What makes a toy training run repeatable: a fixed thread count, deterministic kernels and a seeded generator."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator

import torch


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads and deterministic algorithms, then restore both.

    The thread count is fixed rather than taken from the machine, so a 2-core laptop and a 64-core node sum in the
    same order; results are then identical run to run on one machine (another CPU may differ in the last bits).
    The global RNG is forked: the trainers seed it, and the caller's (a worker's) random state stays as it was."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak``, then cosine decay to zero at ``steps``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def save_half(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Save a state dict as float16 safetensors (the toy models ship in the repository: half the bytes). Loaders cast
    back to the dtype they run in."""
    from safetensors.torch import save_file

    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}, str(path))
