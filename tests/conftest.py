"""Shared fixtures: an offline environment, a per-session model/embedding cache, and one local Ray cluster."""

from __future__ import annotations

import os
import tempfile

import pytest

# Before anything imports huggingface_hub/ray: no network beyond loopback, no telemetry.
os.environ["HF_HUB_OFFLINE"] = "1"
# One CPU worker actor per run unless a test asks for more: each actor imports torch, diffusers and open_clip and loads
# its models (~8 CPU-seconds), and two per run only compete for this machine's two cores.
os.environ["GENBENCH_CPU_WORKERS"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("TQDM_DISABLE", "1")
# Tiny models and test-split embeddings are cached once per test session, outside the user's ~/.cache. Under xdist
# the session's worker processes share one cache (named after the run's id, which every worker gets): each model and
# split embedding is then built once, not once per process; writers of the cache rename whole files and directories
# into place, so a concurrent builder never reads half of one.
_RUN = "".join(c for c in os.environ.get("PYTEST_XDIST_TESTRUNUID", "") if c.isalnum())[:32]
if _RUN:
    _CACHE = os.path.join(tempfile.gettempdir(), f"genbench-test-cache-{_RUN}")
    os.makedirs(_CACHE, mode=0o700, exist_ok=True)
else:
    _CACHE = tempfile.mkdtemp(prefix="genbench-test-cache-")
os.environ.setdefault("GENBENCH_CACHE", _CACHE)


@pytest.fixture(scope="session")
def ray_local():
    """One embedded local Ray cluster for the whole session, bounded to this machine's 2 CPUs (Ray's own tests do the same)."""
    import ray

    from genbench.engine.dispatch import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


# The files whose tests take longest (from `pytest --durations`), longest first. `make test` runs two processes
# that each take whole files (--dist loadfile, --no-loadscope-reorder): started first, the long files overlap the
# many short ones instead of leaving one process working alone at the end.
LONG_FILES = ("test_fault_tolerance.py", "test_ra.py", "test_retrieval_e2e.py", "test_collection_reuse.py",
              "test_s3.py", "test_end_to_end.py", "test_toy_science.py", "test_hostile_data.py", "test_multinode.py",
              "test_locks.py", "test_adapt_engine.py", "test_original_ondisk.py", "test_ray_job.py", "test_adapt.py",
              "test_families.py", "test_generator_sweep.py", "test_class_sums.py", "test_finetune.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a stable sort: the rest keep their order
