"""The retrieval baseline: a LAION-style caption index (index.py) and per-class text-to-text queries with
deduplication and mean text similarity (query.py). No Ray here: the engine wraps these callables."""
