"""Ray: worker actors pinned to GPUs (or CPUs), bounded tasks in flight, bounded retries on another actor.

``ray.init()`` with no address starts an embedded local cluster; ``--address`` or ``RAY_ADDRESS`` joins one.
A worker that dies (OOM, SIGKILL, node loss) is restarted by Ray and its shard is retried elsewhere; a shard that
fails ``max_retries + 1`` times is reported by name, and the run goes on with the rest.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import ray

from genbench.engine.plan import ShardTask
from genbench.engine.processor import ShardProcessor

log = logging.getLogger(__name__)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Join ``address`` / ``RAY_ADDRESS`` if given, else start an embedded local cluster. Returns its resources."""
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        # Workers must import genbench from the same place as the driver (an editable install or the job's working dir).
        if address:
            ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
        else:
            # "local" always starts a fresh embedded cluster, even if a stale `ray start` session left its address file.
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                     logging_level=logging.WARNING)
    return ray.cluster_resources()


def shutdown_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


class _Worker:
    """The actor body: a ShardProcessor living in its own process, loading models once."""

    def __init__(self, threads: int | None = None):
        logging.basicConfig(level=logging.WARNING)
        # Model loading progress bars from every worker would drown the driver's own progress bar.
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
        self.proc = ShardProcessor(threads=threads)

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: ShardTask) -> dict[str, Any]:
        return self.proc.run(task)

    def embed_split(self, *args: Any) -> Any:
        return self.proc.embed_split(*args)


@dataclass
class Outcome:
    results: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)


class WorkerPool:
    """``workers`` actors, each with ``gpus`` GPUs (fractions allowed) or ``cpus`` CPUs when the cluster has no GPU."""

    def __init__(self, workers: int | None = None, gpus: float | None = None, cpus: float = 1.0, max_restarts: int = 3):
        res = ray.cluster_resources()
        n_gpu = float(res.get("GPU", 0))
        if gpus is None:
            gpus = 1.0 if n_gpu >= 1 else 0.0
        if workers is None or workers <= 0:
            workers = int(n_gpu / gpus) if gpus else max(1, min(int(res.get("CPU", 1) // cpus), 2))
        self.gpus, self.cpus = gpus, cpus
        opts: dict[str, Any] = {"max_restarts": max_restarts, "max_task_retries": 0}
        if gpus:
            opts.update(num_gpus=gpus, num_cpus=cpus)
        else:
            opts.update(num_cpus=cpus)
        threads = max(1, int(cpus)) if not gpus else None
        self._cls = ray.remote(**opts)(_Worker)
        self._threads = threads
        self.actors = [self._cls.remote(threads) for _ in range(workers)]
        log.info("started %d worker actor(s) (gpus=%s cpus=%s each)", workers, gpus, cpus)

    def __len__(self) -> int:
        return len(self.actors)

    def pids(self) -> list[int]:
        return ray.get([a.pid.remote() for a in self.actors])

    def map(
        self,
        method: str,
        items: Iterable[tuple[str, tuple]],
        on_result: Callable[[str, Any], None],
        max_in_flight: int = 2,
        max_retries: int = 2,
    ) -> Outcome:
        """Call ``actor.method(*args)`` for each (label, args), at most ``max_in_flight`` per actor.

        A failed call is retried on another actor (when there is one) up to ``max_retries`` times; what still fails
        is returned in ``Outcome.failed`` with its last error. ``on_result(label, value)`` sees each success.
        """
        queue: deque[tuple[str, tuple, int, int | None]] = deque((lbl, args, 0, None) for lbl, args in items)
        inflight: dict[Any, tuple[str, tuple, int, int]] = {}
        load = [0] * len(self.actors)
        out = Outcome()
        while queue or inflight:
            while queue:
                lbl, args, tries, avoid = queue[0]
                candidates = [i for i in range(len(self.actors)) if load[i] < max_in_flight]
                if not candidates:
                    break
                preferred = [i for i in candidates if i != avoid] or candidates
                idx = min(preferred, key=lambda i: load[i])
                queue.popleft()
                ref = getattr(self.actors[idx], method).remote(*args)
                inflight[ref] = (lbl, args, tries, idx)
                load[idx] += 1
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                lbl, args, tries, idx = inflight.pop(ref)
                load[idx] -= 1
                out.attempts[lbl] = tries + 1
                try:
                    value = ray.get(ref)
                except ray.exceptions.ActorDiedError as exc:
                    self._replace_if_dead(idx)
                    self._retry_or_fail(queue, out, lbl, args, tries, idx, max_retries, f"worker died: {_short(exc)}")
                except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
                    self._retry_or_fail(queue, out, lbl, args, tries, idx, max_retries, _short(exc))
                else:
                    on_result(lbl, value)
        return out

    def _replace_if_dead(self, idx: int) -> None:
        # Ray restarts a dead actor up to max_restarts times; after that, start a fresh one in its place.
        try:
            ray.get(self.actors[idx].pid.remote(), timeout=120)
        except Exception:  # noqa: BLE001 - any failure here means the actor is gone for good
            log.warning("worker %d is gone; starting a replacement", idx)
            self.actors[idx] = self._cls.remote(self._threads)

    @staticmethod
    def _retry_or_fail(queue, out, lbl, args, tries, idx, max_retries, err) -> None:
        if tries < max_retries:
            log.warning("%s failed (attempt %d/%d): %s; retrying on another worker", lbl, tries + 1, max_retries + 1, err)
            queue.append((lbl, args, tries + 1, idx))
        else:
            log.error("%s failed %d times, giving up: %s", lbl, tries + 1, err)
            out.failed[lbl] = err

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    last = [ln for ln in text if ln.strip()]
    return (last[-1] if last else type(exc).__name__)[:300]

