"""Shared fixtures: an offline environment, a per-session model/embedding cache, and one local Ray cluster."""

from __future__ import annotations

import os
import tempfile

import pytest

# Before anything imports huggingface_hub/ray: no network beyond loopback, no telemetry.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("TQDM_DISABLE", "1")
# Tiny models and test-split embeddings are cached once per test session, outside the user's ~/.cache.
os.environ.setdefault("GENBENCH_CACHE", tempfile.mkdtemp(prefix="genbench-test-cache-"))


@pytest.fixture(scope="session")
def ray_local():
    """One embedded local Ray cluster for the whole session, bounded to this machine's 2 CPUs (Ray's own tests do the same)."""
    import ray

    from genbench.engine.dispatch import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()
