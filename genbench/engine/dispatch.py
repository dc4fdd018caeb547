"""Ray: worker actors pinned to GPUs (or CPUs), bounded tasks in flight, bounded retries on another actor.

``ray.init()`` with no address starts an embedded local cluster; ``--address`` or ``RAY_ADDRESS`` joins one.
A worker that dies (OOM, SIGKILL, node loss) is restarted by Ray and its shard is retried elsewhere; a shard that
fails ``max_retries + 1`` times is reported by name, and the run goes on with the rest.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import ray

from genbench.engine.plan import ShardTask
from genbench.errors import UsageError
from genbench.engine.processor import ShardProcessor

log = logging.getLogger(__name__)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Join ``address`` / ``RAY_ADDRESS`` if given, else start an embedded local cluster. Returns its resources."""
    if not ray.is_initialized():
        on_term = signal.getsignal(signal.SIGTERM)
        address = address or os.environ.get("RAY_ADDRESS") or None
        # Workers must import genbench from the same place as the driver (an editable install or the job's working dir).
        if address:
            ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
        else:
            # Ray's notice that token auth is on concerns clusters others join; for genbench's own embedded cluster it
            # is noise (shown with -v, where the genbench logger is at DEBUG).
            if not logging.getLogger("genbench").isEnabledFor(logging.DEBUG):
                logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            # "local" always starts a fresh embedded cluster, even if a stale `ray start` session left its address file.
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                     logging_level=logging.WARNING)
        if callable(on_term) and threading.current_thread() is threading.main_thread():
            # Ray's core installs a crash handler for SIGTERM that dumps and aborts; the command's own handler (a
            # clean exit, 143, one line) was there first and stays.
            signal.signal(signal.SIGTERM, on_term)
    return ray.cluster_resources()


def cpu_workers_cap() -> int:
    """How many CPU worker actors a run starts when ``engine.workers`` is unset: ``GENBENCH_CPU_WORKERS`` (default 2;
    each actor loads its own models, so on a small machine one is often faster)."""
    text = os.environ.get("GENBENCH_CPU_WORKERS", "").strip() or "2"
    if not text.isdigit() or not 1 <= int(text) <= 1024:
        raise UsageError("GENBENCH_CPU_WORKERS", text, "an integer from 1 to 1024")
    return int(text)


def shutdown_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


class _Worker:
    """The actor body: a ShardProcessor living in its own process, loading models once."""

    def __init__(self, threads: int | None = None):
        from genbench.sources.resources import quiet_model_loading

        logging.basicConfig(level=logging.WARNING)
        quiet_model_loading()
        self.proc = ShardProcessor(threads=threads)

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: ShardTask) -> dict[str, Any]:
        return self.proc.run(task)

    def embed_split(self, *args: Any) -> Any:
        return self.proc.embed_split(*args)

    def adapt(self, *args: Any) -> Any:
        return self.proc.adapt(*args)

    def release_training(self) -> int:
        return self.proc.release_training()


@dataclass
class Outcome:
    results: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    # The worker's own exception where it is bad input (a UsageError): retrying it would fail the same way.
    causes: dict[str, BaseException] = field(default_factory=dict)


class WorkerPool:
    """``workers`` actors, each with ``gpus`` GPUs (fractions allowed) or ``cpus`` CPUs when the cluster has no GPU.
    A context manager: the actors are killed when the ``with`` block ends, however it ends."""

    def __init__(self, workers: int | None = None, gpus: float | None = None, cpus: float = 1.0, max_restarts: int = 3):
        res = ray.cluster_resources()
        n_gpu = float(res.get("GPU", 0))
        if gpus is None:
            gpus = 1.0 if n_gpu >= 1 else 0.0
        if workers is None or workers <= 0:
            workers = int(n_gpu / gpus) if gpus else max(1, min(int(res.get("CPU", 1) // cpus), cpu_workers_cap()))
        self.gpus, self.cpus = gpus, cpus
        opts: dict[str, Any] = {"max_restarts": max_restarts, "max_task_retries": 0}
        if gpus:
            opts.update(num_gpus=gpus, num_cpus=cpus)
        else:
            opts.update(num_cpus=cpus)
        threads = max(1, int(cpus)) if not gpus else None
        self._cls = ray.remote(**opts)(_Worker)
        self._threads = threads
        self._workers = workers
        self._actors: list[Any] | None = None

    @property
    def actors(self) -> list[Any]:
        """The actors, started on first use: a run whose shards are all done (a rerun, a resumed run that only
        scores) never pays for their processes and model imports."""
        if self._actors is None:
            self._actors = [self._cls.remote(self._threads) for _ in range(self._workers)]
            log.info("started %d worker actor(s) (gpus=%s cpus=%s each)", self._workers, self.gpus, self.cpus)
        return self._actors

    @actors.setter
    def actors(self, value: list[Any]) -> None:
        self._actors = value

    def __len__(self) -> int:
        return self._workers if self._actors is None else len(self._actors)

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
        An actor whose process died gets no new calls until a probe finds it running again (Ray restarts it, or we
        start a replacement once Ray gives up): calls sent to a restarting actor fail at once, and would otherwise
        use up every retry of a shard within one restart.
        """
        queue: deque[tuple[str, tuple, int, int | None]] = deque((lbl, args, 0, None) for lbl, args in items)
        inflight: dict[Any, tuple[str, tuple, int, int]] = {}
        health = _Health(self)
        load = [0] * len(self.actors)
        out = Outcome()
        while queue or inflight:
            while queue:
                lbl, args, tries, avoid = queue[0]
                candidates = [i for i in range(len(self.actors)) if load[i] < max_in_flight and health.ok(i)]
                if not candidates:
                    break
                preferred = [i for i in candidates if i != avoid] or candidates
                idx = min(preferred, key=lambda i: load[i])
                queue.popleft()
                ref = getattr(self.actors[idx], method).remote(*args)
                inflight[ref] = (lbl, args, tries, idx)
                load[idx] += 1
            if queue and not inflight and health.all_gone():
                for lbl, _args, _tries, _avoid in queue:
                    out.failed[lbl] = "no worker left: every actor died repeatedly"
                queue.clear()
                break
            waiting = list(inflight) + health.refs()
            if waiting:
                ready, _ = ray.wait(waiting, num_returns=1, timeout=health.wait_timeout())
            else:  # every actor is down and only a re-probe is pending
                ready = []
                time.sleep(health.REPROBE_S)
            for ref in ready:
                if health.owns(ref):
                    health.resolve(ref)
                    continue
                lbl, args, tries, idx = inflight.pop(ref)
                load[idx] -= 1
                out.attempts[lbl] = tries + 1
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayActorError as exc:  # the process died or is restarting
                    health.lost(idx)
                    self._retry_or_fail(queue, out, lbl, args, tries, idx, max_retries, f"worker died: {_short(exc)}")
                except ray.exceptions.RayError as exc:  # task error, lost object, OOM kill, node death, ...
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, UsageError):
                        log.error("%s failed on bad input, not retried: %s", lbl, cause)
                        out.failed[lbl], out.causes[lbl] = str(cause), cause
                    else:
                        self._retry_or_fail(queue, out, lbl, args, tries, idx, max_retries, _short(exc))
                else:
                    on_result(lbl, value)
            health.reprobe_due()
        return out

    def call_all(self, method: str) -> list[Any]:
        """``method()`` on every started, live actor; an actor that died meanwhile is skipped (it holds nothing any
        more)."""
        out = []
        for ref in [getattr(a, method).remote() for a in self._actors or []]:
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayError as exc:
                log.debug("%s skipped on a dead worker: %s", method, _short(exc))
        return out

    def replace(self, idx: int) -> None:
        """Start a fresh actor in place of one that Ray will not restart any more."""
        log.warning("worker %d is gone for good; starting a replacement", idx)
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
        for a in self._actors or []:
            ray.kill(a)
        self._actors = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            # Interrupted (Ctrl-C, SIGTERM): the actors die with this driver, and killing them one by one would wait
            # on a cluster that may itself be going down with the same signal.
            self.actors = []
            return
        self.close()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    last = [ln for ln in text if ln.strip()]
    return (last[-1] if last else type(exc).__name__)[:300]



class _Health:
    """Which actors may take calls. A lost actor is probed (``pid``) until it answers, without blocking the driver."""

    REPROBE_S = 0.5
    MAX_REPLACEMENTS = 2

    def __init__(self, pool: WorkerPool):
        self.pool = pool
        self.replaced: dict[int, int] = {}
        self.gone: set[int] = set()
        self.down: set[int] = set()
        self.probes: dict[Any, int] = {}
        self.due: dict[int, float] = {}  # actor -> when to probe it again (it was still restarting)

    def ok(self, idx: int) -> bool:
        return idx not in self.down

    def all_gone(self) -> bool:
        return len(self.gone) == len(self.pool.actors)

    def refs(self) -> list[Any]:
        return list(self.probes)

    def owns(self, ref: Any) -> bool:
        return ref in self.probes

    def wait_timeout(self) -> float | None:
        return self.REPROBE_S if self.due else None

    def lost(self, idx: int) -> None:
        if idx not in self.down:
            log.warning("worker %d died or is restarting; it gets no shards until it answers again", idx)
            self.down.add(idx)
            self._probe(idx)

    def _probe(self, idx: int) -> None:
        self.probes[self.pool.actors[idx].pid.remote()] = idx

    def resolve(self, ref: Any) -> None:
        idx = self.probes.pop(ref)
        try:
            pid = ray.get(ref)
        except ray.exceptions.ActorDiedError:  # Ray used up max_restarts: this actor is gone for good
            self.replaced[idx] = self.replaced.get(idx, 0) + 1
            if self.replaced[idx] > self.MAX_REPLACEMENTS:  # e.g. its __init__ keeps failing: stop, don't loop
                log.error("worker %d was replaced %d times and died again; giving up on it", idx, self.MAX_REPLACEMENTS)
                self.gone.add(idx)
                return
            self.pool.replace(idx)
            self._probe(idx)
        except ray.exceptions.RayActorError:  # still restarting: ask again shortly
            self.due[idx] = time.monotonic() + self.REPROBE_S
        else:
            log.info("worker %d is back (pid %d)", idx, pid)
            self.down.discard(idx)

    def reprobe_due(self) -> None:
        now = time.monotonic()
        for idx, when in list(self.due.items()):
            if when <= now:
                del self.due[idx]
                self._probe(idx)
