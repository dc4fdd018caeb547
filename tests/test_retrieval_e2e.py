"""Retrieval end to end on a synthetic caption pool: index -> query -> Ray Data downloads from a real loopback HTTP
server -> shards -> scores with MTS in results.json; dead links are replaced and counted; a rerun downloads nothing."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from genbench.cli import main
from genbench.config import parse_config
from genbench.engine.experiment import run_experiment
from tests.helpers import snapshot, tars
from tests.http_server import Route, serve

FILLER = ["on a table", "close up", "in a notebook", "hand written", "scanned page", "blue ink", "a poster", "old paper"]


def _png(value: int, rng) -> bytes:
    pixels = np.clip(rng.normal(value, 20, size=(16, 16, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _query_vectors() -> np.ndarray:
    from genbench.catalog import get_dataset
    from genbench.models.clip import load_clip
    from genbench.retrieval.query import class_queries

    spec = get_dataset("digits")
    return class_queries(load_clip("tiny"), spec.classes, spec.templates)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """~3,000 captions: per digit class 60 on-topic ones (every 7th a dead link), the rest off-topic distractors.

    Like LAION, the pool ships precomputed text embeddings: a tiny random text encoder cannot tell "digit 3" from
    "digit 8" reliably, so on-topic captions get the class's own query vector plus noise (what a trained encoder would
    give), distractors random directions. The test is about the pipeline, not about the encoder."""
    tmp = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(0)
    queries = _query_vectors()
    vectors = []
    routes, urls, captions = {}, [], []
    for c in range(10):
        for i in range(60):
            path = f"/img/{c}/{i}.png"
            if i % 7 != 3:
                routes[path] = Route(body=_png(20 * c + 30, rng), content_type="image/png")
            urls.append(path)
            captions.append(f"a handwritten digit {c} {FILLER[i % len(FILLER)]}")
            vectors.append(queries[c] + rng.normal(0, 0.02, queries.shape[1]))
    words = ["cat", "river", "car", "mountain", "bread", "guitar", "tree", "boat", "chair", "lamp"]
    for i in range(2400):
        urls.append(f"/other/{i}.png")
        captions.append(f"a photo of a {words[i % 10]} {FILLER[(i // 10) % len(FILLER)]} {i}")
        vectors.append(rng.normal(0, 1, queries.shape[1]))
    emb = np.asarray(vectors, dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    with serve(routes) as base:
        table = pa.table({"url": [base + u for u in urls], "caption": captions,
                          "text_embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])})
        pq.write_table(table, tmp / "captions-0.parquet")
        yield tmp, base, routes


@pytest.fixture(scope="module")
def index_dir(pool, ray_local):
    tmp, _, _ = pool
    out = tmp / "index"
    assert main(["index", "build", "--captions", str(tmp / "captions-*.parquet"), "--clip", "tiny", "--out", str(out),
                 "--embedding-column", "text_embedding"]) == 0
    return out


def test_index_build_embeds_captions_on_ray_workers(pool, ray_local):
    tmp, _, _ = pool
    out = tmp / "index-computed"
    assert main(["index", "build", "--captions", str(tmp / "captions-*.parquet"), "--clip", "tiny", "--out", str(out),
                 "--workers", "2"]) == 0
    info = json.loads((out / "index.json").read_text())
    assert info["count"] == 3000 and info["embeddings"] == "computed"
    from genbench.models.clip import load_clip
    from genbench.retrieval.index import open_index

    index = open_index(str(out))
    q = load_clip("tiny").encode_texts(["a handwritten digit 3 on a table"])
    sims, ids = index.search(q, 1)
    assert index.metadata(ids[0])[0]["caption"] == "a handwritten digit 3 on a table" and sims[0, 0] > 0.999


def _cfg(index_dir, allow=("127.0.0.0/8",)):
    return parse_config({
        "name": "retrieval", "datasets": ["digits"], "clip": "tiny", "shard_size": 20,
        "sources": [{"source": "retrieved", "index": str(index_dir), "shots": 4, "oversample": 3.0, "image_size": 16,
                     "allow_addresses": list(allow)}],
        "engine": {"workers": 2},
    })


def test_index_directory(index_dir):
    info = json.loads((index_dir / "index.json").read_text())
    assert info["count"] == 3000 and info["clip_slug"] == "tiny"


def test_retrieval_end_to_end_and_rerun(pool, index_dir, tmp_path):
    _, _, routes = pool
    out = str(tmp_path / "run")
    (rec,) = run_experiment(_cfg(index_dir), out, progress=False)
    assert rec["source"] == "retrieved" and 0 < rec["mts"] <= 1
    assert set(rec["scores"]) >= {"zeroshot", "cler", "cler_text"}
    coll = os.path.join(out, "shards", "digits", "retrieved", "index_s0")
    man = json.load(open(os.path.join(coll, "manifest.json")))
    kinds = man["fetch"]["kinds"]
    assert kinds.get("ok", 0) > 0 and sum(kinds.values()) == man["fetch"]["candidates"]
    samples = list(wds.WebDataset(tars(coll), shardshuffle=False, empty_check=False).decode("rgb8"))
    urls = [s["json"]["url"] for s in samples]
    assert len(urls) == len(set(urls)) == rec["n_train"]
    for s in samples:
        assert {"url", "caption", "similarity"} <= set(s["json"])
        assert "/img/" in s["json"]["url"] and s["json"]["caption"].startswith("a handwritten digit")
        assert s["jpg"].shape == (16, 16, 3)
    assert all(not u.endswith(("/3.png", "/10.png", "/17.png")) for u in urls)  # dead links never become samples
    hits = {p: r.hits for p, r in routes.items()}
    before = snapshot(coll)
    (again,) = run_experiment(_cfg(index_dir), out, progress=False)
    assert {p: r.hits for p, r in routes.items()} == hits  # nothing downloaded again
    assert snapshot(coll) == before and again["scores"] == rec["scores"]


def test_loopback_refused_without_allow_list(pool, index_dir, tmp_path):
    out = str(tmp_path / "refused")
    from genbench.errors import GenbenchError

    with pytest.raises(GenbenchError):  # every class stays empty: CLER is undefined, and the run says so
        run_experiment(_cfg(index_dir, allow=()), out, progress=False)
    man = json.load(open(os.path.join(out, "shards", "digits", "retrieved", "index_s0", "manifest.json")))
    assert set(man["fetch"]["kinds"]) == {"refused_address"}
