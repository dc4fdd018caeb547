"""Retrieval, all Ray-free: a LAION-style caption index (index, build), per-class text-to-text queries with
deduplication and mean text similarity (query), safe fetching (fetch), the download cache (staging), the Ray Data batch
callable (download) and slot assignment (assign). The engine runs these callables on the cluster."""
