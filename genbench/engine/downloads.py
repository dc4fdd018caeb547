"""Retrieval downloads on the cluster: a Ray Data pipeline over a URL table, each batch fetched by
:class:`genbench.retrieval.download.FetchBatch` (Ray-free) on an autoscaling actor pool and written as one staging
part. What to download and what to do with it is the retrieved source's business; this is only the wiring."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import ray

from genbench.retrieval.download import FetchBatch


def download(urls: list[str], staging_dir: str, policy: dict[str, Any], storage_options: dict[str, Any],
             progress: bool = True, batch_size: int = 64, concurrency: int = 2, threads: int = 16) -> int:
    """Fetch ``urls`` into ``staging_dir`` (their outcomes are read back from there); returns how many were tried."""
    if not urls:
        return 0
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    blocks = max(1, -(-len(urls) // batch_size))
    ds = ray.data.from_arrow(pa.table({"url": pa.array(urls, pa.string())})).repartition(blocks)
    ds = ds.map_batches(
        FetchBatch,
        fn_constructor_kwargs={"staging_dir": staging_dir, "policy": policy, "storage_options": storage_options,
                               "threads": threads},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=concurrency),
        num_cpus=0.5,  # mostly waiting on the network: two fetchers per core
    )
    return sum(b.num_rows for b in ds.iter_batches(batch_format="pyarrow", batch_size=None))
