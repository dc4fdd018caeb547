"""Retrieval end to end on a synthetic caption pool: index -> query -> Ray Data downloads from a real loopback HTTP
server -> shards -> scores with MTS in results.json; dead links are replaced and counted; a rerun downloads nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from genbench.cli import main
from genbench.config import parse_config
from genbench.engine.experiment import run_experiment
from tests.helpers import snapshot, tars, write_captions
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
    with serve(routes) as base:
        write_captions(str(tmp / "captions-0.parquet"), base, urls, captions, vectors)
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


def test_index_build_with_a_budget_records_its_tuned_search_parameters(pool):
    tmp, _, _ = pool
    out = tmp / "index-budget"
    argv = ["index", "build", "--captions", str(tmp / "captions-*.parquet"), "--clip", "tiny", "--out", str(out),
            "--embedding-column", "text_embedding", "--memory-budget", "600000", "--recall-target", "0.9"]
    assert main(argv) == 0
    info = json.loads((out / "index.json").read_text())
    assert info["factory"].startswith("IVF") and info["recall_target"] == 0.9 and info["recall_at_10"] >= 0.9
    assert info["search_params"]["nprobe"] >= 1
    from genbench.retrieval.index import open_index

    import faiss

    assert faiss.extract_index_ivf(open_index(str(out)).index).nprobe == info["search_params"]["nprobe"]


def _cfg(index_dir, allow=("127.0.0.0/8",), **extra):
    return parse_config({
        "name": "retrieval", "datasets": ["digits"], "clip": "tiny", "shard_size": 20,
        "sources": [{"source": "retrieved", "index": str(index_dir), "shots": 4, "oversample": 3.0, "image_size": 16,
                     "allow_addresses": list(allow), **extra}],
        "engine": {"workers": 2},
    })


def _retrieved(out: str) -> str:
    """The run's one retrieved collection: named by the index's directory and identity, ``index-<id>_s0``."""
    root = os.path.join(out, "shards", "digits", "retrieved")
    (variant,) = os.listdir(root)
    return os.path.join(root, variant)


def test_index_directory(index_dir):
    info = json.loads((index_dir / "index.json").read_text())
    assert info["count"] == 3000 and info["clip_slug"] == "tiny"


def test_retrieval_end_to_end_and_rerun(pool, index_dir, tmp_path):
    _, _, routes = pool
    out = str(tmp_path / "run")
    (rec,) = run_experiment(_cfg(index_dir), out, progress=False)
    assert rec["source"] == "retrieved" and 0 < rec["mts"] <= 1
    assert set(rec["scores"]) >= {"zeroshot", "cler", "cler_text"}
    coll = _retrieved(out)
    man = json.load(open(os.path.join(coll, "manifest.json")))
    kinds = man["fetch"]["kinds"]
    assert kinds.get("ok", 0) > 0 and sum(kinds.values()) == man["fetch"]["candidates"]
    info = json.loads((index_dir / "index.json").read_text())
    assert os.path.basename(coll) == f"index-{info['id'][:8]}_px16_s0"  # the index's identity, not only its folder
    # Download and decode time is CPU time, priced at the CPU instance's rate per core, never at the GPU's.
    cost = man["cost"]
    assert cost["fetch_cpu_seconds"] == pytest.approx(man["fetch"]["cpu_seconds"]) and cost["fetch_cpu_seconds"] > 0
    # The text-to-text search is priced too (the paper's retrieval cost is its search).
    assert cost["query_cpu_seconds"] == pytest.approx(man["query"]["cpu_seconds"]) and cost["query_cpu_seconds"] > 0
    assert cost["gpu_seconds"] == 0.0
    assert cost["cpu_seconds"] >= cost["fetch_cpu_seconds"] + cost["query_cpu_seconds"]
    expected = cost["cpu_seconds"] * (0.21 / 32) / 3600 / cost["images"]
    assert rec["cost"]["usd_per_image"] == pytest.approx(expected, rel=1e-9)
    # At the paper's spot rates (the same 0.21 USD/h for 32 vCPU) the figure is the same.
    assert rec["cost"]["usd_per_image_spot"] == pytest.approx(expected, rel=1e-9)
    assert rec["cost"]["priced_by"] == "measured seconds"
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


def test_loopback_refused_without_allow_list_then_fetched_once_allowed(pool, index_dir, tmp_path):
    """A refused address is final under the policy that refused it; allowing the network on the next run (same
    collection: the allow-list is not part of its identity) fetches those URLs."""
    out = str(tmp_path / "refused")
    from genbench.errors import GenbenchError

    with pytest.raises(GenbenchError):  # every class stays empty: CLER is undefined, and the run says so
        run_experiment(_cfg(index_dir, allow=()), out, progress=False)
    man = json.load(open(os.path.join(_retrieved(out), "manifest.json")))
    assert set(man["fetch"]["kinds"]) == {"refused_address"}
    (rec,) = run_experiment(_cfg(index_dir), out, progress=False)
    assert rec["n_train"] == 40
    man = json.load(open(os.path.join(_retrieved(out), "manifest.json")))
    assert "refused_address" not in man["fetch"]["kinds"] and man["shortfall"]["missing_samples"] == 0


def test_transient_failures_are_retried_on_the_next_run_and_permanent_ones_are_not(pool, index_dir, tmp_path):
    """Class 0's image host answers 503 to every request of the first run (all retries included): that class stays
    empty and the run fails naming it. The rerun fetches exactly those URLs again, fills class 0 and redoes the shards
    that were short; dead links (404) and every other URL are not fetched again."""
    from genbench.errors import GenbenchError

    _, _, routes = pool
    down = [p for p in routes if p.startswith("/img/0/")]
    dead = [f"/img/{c}/{i}.png" for c in range(10) for i in range(60) if i % 7 == 3]
    for p in dead:
        routes[p] = Route(status=404, body=b"gone", content_type="text/plain")
    try:
        for p in down:
            routes[p].fail_first = routes[p].hits + 3  # fetch's 1 try + 2 retries, all answered 503
        out = str(tmp_path / "flaky")
        with pytest.raises(GenbenchError, match="no external samples"):
            run_experiment(_cfg(index_dir), out, progress=False)
        coll = _retrieved(out)
        man = json.load(open(os.path.join(coll, "manifest.json")))
        assert man["fetch"]["kinds"].get("http_5xx", 0) > 0
        assert man["shortfall"]["per_class"]["0"] == 4
        after_first = {p: r.hits for p, r in routes.items()}
        assert sum(after_first[p] for p in dead) > 0  # some dead links were candidates

        (rec,) = run_experiment(_cfg(index_dir), out, progress=False)
        after_second = {p: r.hits for p, r in routes.items()}
        retried = {p for p in routes if after_second[p] != after_first[p]}
        assert retried and retried <= set(down)  # only the transient failures were fetched again ...
        assert all(after_second[p] == after_first[p] + 1 for p in retried)  # ... once each
        assert rec["n_train"] == 40
        man = json.load(open(os.path.join(coll, "manifest.json")))
        assert "http_5xx" not in man["fetch"]["kinds"] and man["shortfall"]["missing_samples"] == 0
        classes = [s["json"]["cls"] for s in wds.WebDataset(tars(coll), shardshuffle=False, empty_check=False).decode()]
        assert classes.count(0) == 4
    finally:
        for p in down:
            routes[p].fail_first = 0
        for p in dead:
            routes.pop(p)


I2D = os.environ.get("GENBENCH_IMG2DATASET") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv-img2dataset", "bin", "img2dataset")


def test_an_img2dataset_download_is_a_retrieval_source_with_no_http_request(pool, index_dir, tmp_path):
    """img2dataset (``make img2dataset-tool``) downloads the pool's digit images from the loopback server, honouring
    X-Robots-Tag opt-outs; a retrieved collection with ``images_from`` then takes its candidates' images from that
    download: the server sees no request, opted-out and dead images never become samples, the rerun reads nothing."""
    import pyarrow.parquet as pq

    from genbench.retrieval import staging

    assert os.access(I2D, os.X_OK), f"{I2D} missing: `make img2dataset-tool` installs img2dataset"
    tmp, base, routes = pool
    captions = pq.read_table(tmp / "captions-0.parquet", columns=["url", "caption"])
    digits = captions.filter(pc_contains(captions.column("url"), "/img/"))
    pq.write_table(digits, tmp_path / "urls.parquet")
    opted_out = [f"/img/{c}/{i}.png" for c in range(10) for i in range(60) if i % 7 == 5 and f"/img/{c}/{i}.png" in routes]
    for p in opted_out:
        routes[p].headers = {"X-Robots-Tag": "noai, noindex"}
    download = tmp_path / "laion-subset"
    try:
        run = subprocess.run([I2D, "--url_list", str(tmp_path / "urls.parquet"), "--input_format", "parquet",
                              "--url_col", "url", "--caption_col", "caption", "--output_format", "webdataset",
                              "--output_folder", str(download), "--image_size", "32", "--resize_mode", "center_crop",
                              "--processes_count", "1", "--thread_count", "8", "--enable_wandb", "False"],
                             capture_output=True, text=True, timeout=240,
                             env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    finally:
        for p in opted_out:
            routes[p].headers = {}
    assert run.returncode == 0, run.stderr[-2000:]
    status = pq.read_table(download / "00000.parquet").to_pylist()
    assert len(status) == 600 and sum(r["status"] == "success" for r in status) == 600 - len(opted_out) - 10 * 9
    assert {r["error_message"] for r in status if r["url"].endswith(tuple(opted_out))} == {
        "Use of image disallowed by X-Robots-Tag directive"}

    hits = {p: r.hits for p, r in routes.items()}
    config = _cfg(index_dir, allow=(), images_from=str(download))  # no address allowed: a fetch would be refused
    out = str(tmp_path / "run")
    (rec,) = run_experiment(config, out, progress=False)
    assert {p: r.hits for p, r in routes.items()} == hits  # not one HTTP request
    assert rec["n_train"] == 40
    coll = _retrieved(out)
    assert os.path.basename(coll).endswith("_px16_i2d_s0")
    man = json.load(open(os.path.join(coll, "manifest.json")))
    kinds = man["fetch"]["kinds"]
    assert kinds["ok"] > 0 and kinds.get("robots_disallowed", 0) > 0 and kinds.get("not_downloaded", 0) > 0
    samples = list(wds.WebDataset(tars(coll), shardshuffle=False, empty_check=False).decode("rgb8"))
    urls = [s["json"]["url"] for s in samples]
    assert not [u for u in urls if u.endswith(tuple(opted_out))] and len(set(urls)) == 40
    assert all(s["jpg"].shape == (16, 16, 3) and s["txt"] == s["json"]["caption"] for s in samples)
    outcomes = staging.read_outcomes(staging.staging_dir_of(coll))
    assert {outcomes[base + p].kind for p in opted_out if base + p in outcomes} == {"robots_disallowed"}

    before = snapshot(coll)
    (again,) = run_experiment(config, out, progress=False)
    assert snapshot(coll) == before and again["scores"] == rec["scores"]
    assert {p: r.hits for p, r in routes.items()} == hits


def pc_contains(column, text: str):
    import pyarrow.compute as pc

    return pc.match_substring(column, text)
