"""Downloading a batch of URLs into a staging part: the callable a Ray Data ``map_batches`` stage runs (the engine
wires it; a test calls it in-process)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pyarrow as pa

from genbench.retrieval import staging
from genbench.retrieval.fetch import fetch_many
from genbench.retrieval.policy import FetchPolicy
from genbench.shards.store import Store


class FetchBatch:
    """Fetch one batch (a table with a ``url`` column) on a thread pool and write the outcomes, bytes included, as
    one staging part; returns the outcomes without the bytes."""

    def __init__(self, staging_dir: str, policy: dict[str, Any], storage_options: dict[str, Any], threads: int = 16):
        self.staging_dir, self.storage_options, self.threads = staging_dir, storage_options, threads
        self.policy = FetchPolicy(**policy)

    def __call__(self, batch: pa.Table) -> pa.Table:
        urls = batch.column("url").to_pylist()
        t0 = time.process_time()
        results = fetch_many(urls, self.policy, max_workers=self.threads)
        cpu = (time.process_time() - t0) / max(1, len(results))  # measured CPU-seconds, shared over the batch
        for r in results:
            r.decode_s, r.encode_s = cpu, 0.0
        table = staging.results_table(results, self.policy.digest())
        store = Store(self.staging_dir, self.storage_options)
        store.write_bytes(f"part-{uuid.uuid4().hex}.parquet", staging.table_bytes(table))
        return table.drop_columns(["data"])
