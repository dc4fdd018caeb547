"""The retrieval baseline: a LAION-style caption index (index.py) and per-class text-to-text queries with
deduplication and mean text similarity (query.py). No Ray here: the engine wraps these callables."""

from genbench.retrieval.index import CaptionIndex, IndexInfo, build_index, build_index_from_embeddings, open_index
from genbench.retrieval.query import RetrievalPlan, fill_shots, mean_text_similarity, retrieve

__all__ = [
    "CaptionIndex",
    "IndexInfo",
    "RetrievalPlan",
    "build_index",
    "build_index_from_embeddings",
    "fill_shots",
    "mean_text_similarity",
    "open_index",
    "retrieve",
]
