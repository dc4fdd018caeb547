"""Caption index and per-class retrieval on a synthetic LAION-like pool (thousands of rows, tiny offline CLIP)."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genbench.errors import UsageError
from genbench.retrieval.assign import assign_slots, short_classes
from genbench.retrieval.build import build_index, build_index_from_embeddings, choose_factory, estimate_bytes
from genbench.retrieval.index import open_index
from genbench.retrieval.query import class_query_texts, mean_text_similarity, retrieve

CLASSES = ["tabby cat", "golden retriever", "fire truck", "sunflower", "sailboat", "espresso", "violin", "lighthouse"]
TEMPLATES = ["a photo of a {}.", "a blurry photo of the {}.", "{} in the wild"]
FILLER = "photo stock image free download hd wallpaper vintage new best sale cheap summer blue red old modern".split()


class HashingEncoder:
    """Deterministic bag-of-words text encoder: each word hashes to a random unit vector; a text is the normalised sum.
    Texts that share words are similar, so similarities are easy to reason about by hand."""

    ref, slug, dim = "hash-bow-64", "hash-bow-64", 64

    def _word(self, w: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = np.stack([sum((self._word(w) for w in t.lower().replace(".", " ").split()), np.zeros(self.dim, np.float32)) for t in texts])
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _pool(n: int, seed: int = 0) -> pa.Table:
    """LAION-like rows: most captions mention one class among filler words; some mention none; URL ids are unique."""
    rng = np.random.default_rng(seed)
    urls, caps = [], []
    for i in range(n):
        words = list(rng.choice(FILLER, size=rng.integers(2, 6)))
        if rng.random() < 0.85:
            words.insert(int(rng.integers(0, len(words) + 1)), CLASSES[i % len(CLASSES)])
        urls.append(f"https://img{i % 7}.example.org/{i:06d}.jpg")
        caps.append(" ".join(words))
    return pa.table({"URL": urls, "TEXT": caps})


@pytest.fixture(scope="module")
def tiny_clip():
    from genbench.models.clip import load_clip

    return load_clip("tiny")


@pytest.fixture(scope="module")
def pool_index(tmp_path_factory, tiny_clip):
    root = tmp_path_factory.mktemp("pool")
    table = _pool(2400)
    pq.write_table(table.slice(0, 1200), root / "part-000.parquet")
    pq.write_table(table.slice(1200), root / "part-001.parquet")
    info = build_index(str(root / "part-*.parquet"), tiny_clip, str(root / "flat"), batch_size=500)
    return root, table, info


def test_build_writes_a_complete_directory(pool_index, tiny_clip):
    root, table, info = pool_index
    assert (info.count, info.dim, info.factory, info.clip, info.embeddings) == (2400, tiny_clip.dim, "Flat", "tiny", "computed")
    assert sorted(os.listdir(root / "flat")) == ["index.faiss", "index.json", "metadata.parquet"]
    idx = open_index(str(root / "flat"))
    assert len(idx) == 2400 and info.index_bytes == os.path.getsize(root / "flat" / "index.faiss")
    # the metadata row of a hit is the caption whose embedding is the hit
    q = tiny_clip.encode_texts([table["TEXT"][1234].as_py()])
    sims, ids = idx.search(q, 3)
    row = idx.metadata(ids[0][:1])[0]
    assert row["caption"] == table["TEXT"][1234].as_py()
    assert sims[0][0] == pytest.approx(1.0, abs=1e-4) and np.all(np.diff(sims[0]) <= 1e-6)


@pytest.mark.parametrize("factory, params", [("IVF32,Flat", {"nprobe": 4}), ("HNSW16", {}), ("IVF16,PQ8x4", {"nprobe": 4})])
def test_approximate_indexes_agree_with_exact_on_top1(pool_index, tiny_clip, tmp_path, factory, params):
    """Uncompressed approximate indexes must mostly return the exact top-1; a PQ index (lossy codes) must mostly have
    the exact top-1 among its top 10, which is how compressed indexes are used (search deeper, keep the best)."""
    root, table, _ = pool_index
    exact = open_index(str(root / "flat"))
    vectors = exact.index.reconstruct_n(0, len(exact))
    meta = pa.table({"url": table["URL"], "caption": table["TEXT"]})
    # chunks, as Ray workers would hand them over; training needs the first 1000 rows
    chunks = (vectors[i : i + 700] for i in range(0, len(vectors), 700))
    info = build_index_from_embeddings(chunks, meta, str(tmp_path / "approx"), clip_ref="tiny", factory=factory, train_size=1000)
    approx = open_index(str(tmp_path / "approx"), nprobe=params.get("nprobe"))
    assert info.factory == factory and len(approx) == 2400
    queries = np.concatenate([tiny_clip.encode_texts(CLASSES), vectors[::60] + 0.05 * np.random.default_rng(1).standard_normal(vectors[::60].shape)])
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    _, ids_exact = exact.search(queries, 1)
    depth = 10 if "PQ" in factory else 1
    _, ids_approx = approx.search(queries, depth)
    # near-duplicate captions make exact ties common: compare the retrieved captions, not only the ids
    caption = lambda i: exact.metadata([i])[0]["caption"]  # noqa: E731
    same = [caption(a) in {caption(b) for b in row} for a, row in zip(ids_exact[:, 0], ids_approx)]
    assert np.mean(same) >= 0.8, (factory, np.mean(same))


def test_retrieval_per_class_on_the_pool(pool_index, tiny_clip):
    root, _, _ = pool_index
    idx = open_index(str(root / "flat"))
    plan = retrieve(idx, tiny_clip, CLASSES, TEMPLATES, shots=8, oversample=2)
    assert [c.name for c in plan.classes] == CLASSES
    urls = [x.url for c in plan.classes for x in c.candidates]
    assert len(urls) == len(set(urls))  # no URL in two classes
    for c in plan.classes:
        assert len(c.candidates) == 16
        assert all(a.similarity >= b.similarity for a, b in zip(c.candidates, c.candidates[1:]))
        assert len(c.top_similarities) == 10
    # the pool's captions for a class mention its name: most of what a class retrieves should too
    hit_rate = np.mean([c.name in x.caption for c in plan.classes for x in c.candidates])
    assert hit_rate > 0.7, hit_rate
    table = plan.url_table()
    assert table.num_rows == 8 * 16 and set(table.column_names) == {"cls", "rank", "url", "caption", "similarity", "id"}


def _hand_index(tmp_path, rows: list[tuple[str, str]], enc: HashingEncoder):
    caps = [c for _, c in rows]
    meta = pa.table({"url": [u for u, _ in rows], "caption": caps})
    build_index_from_embeddings(enc.encode_texts(caps), meta, str(tmp_path / "hand"), clip_ref=enc.ref)
    return open_index(str(tmp_path / "hand"))


def test_shared_url_goes_to_the_most_similar_class_only(tmp_path):
    enc = HashingEncoder()
    rows = [
        ("http://a/1.jpg", "cat"),
        ("http://a/2.jpg", "cat sofa"),
        ("http://b/1.jpg", "dog"),
        ("http://b/2.jpg", "dog park"),
        ("http://shared.jpg", "cat dog dog dog"),  # this caption is closer to "dog" ...
        ("http://shared.jpg", "cat cat dog"),  # ... and this row (same URL) closer to "cat", but less than to "dog" above
    ]
    idx = _hand_index(tmp_path, rows, enc)
    plan = retrieve(idx, enc, ["cat", "dog"], ["{}"], shots=3, oversample=1)
    q = enc.encode_texts(["cat", "dog"])  # one template "{}" plus the bare name: the query is the name itself
    e = enc.encode_texts(["cat dog dog dog", "cat cat dog"])
    sim_cat, sim_dog = float(np.max(e @ q[0])), float(np.max(e @ q[1]))
    winner = 0 if sim_cat > sim_dog else 1
    assert winner == 1  # the construction above: the dog-heavy caption is the URL's best claim
    owners = [c.cls for c in plan.classes if any(x.url == "http://shared.jpg" for x in c.candidates)]
    assert owners == [winner]
    # every URL of this 6-row pool is within both classes' search depth, so each is a recorded conflict
    conflicts = {c.url: c for c in plan.conflicts}
    assert sorted(conflicts["http://shared.jpg"].classes) == [0, 1] and conflicts["http://shared.jpg"].winner == winner
    assert conflicts["http://a/1.jpg"].winner == 0 and conflicts["http://b/1.jpg"].winner == 1
    recorded = {c["url"]: c["winner"] for c in plan.to_json()["conflicts"]}
    assert recorded["http://shared.jpg"] == winner


def test_mts_by_hand(tmp_path):
    enc = HashingEncoder()
    caps = ["red car", "red car fast", "blue boat", "old blue boat", "car boat"]
    idx = _hand_index(tmp_path, [(f"http://x/{i}.jpg", c) for i, c in enumerate(caps)], enc)
    templates = ["a {} photo"]
    plan = retrieve(idx, enc, ["car", "boat"], templates, shots=1, oversample=1, mts_k=3)
    emb = enc.encode_texts(caps)
    expected = []
    for name in ("car", "boat"):
        q = enc.encode_texts(class_query_texts(name, templates)).mean(0)
        q /= np.linalg.norm(q)
        expected.append(float(np.mean(np.sort(emb @ q)[::-1][:3])))
    per_class, dataset = mean_text_similarity(plan)
    assert per_class == pytest.approx(expected, abs=1e-5)
    assert dataset == pytest.approx(np.mean(expected), abs=1e-5)


def test_slot_assignment_replaces_dead_links_keeps_earlier_choices_and_reports_short_classes(tmp_path):
    enc = HashingEncoder()
    caps = ["cat", "cat one", "cat two", "cat three", "dog", "dog one"]
    idx = _hand_index(tmp_path, [(f"http://x/{i}.jpg", c) for i, c in enumerate(caps)], enc)
    plan = retrieve(idx, enc, ["cat", "dog"], ["{}"], shots=2, oversample=2)
    cat_urls = [x.url for x in plan.classes[0].candidates]
    dog_urls = [x.url for x in plan.classes[1].candidates]
    alive = set(cat_urls[1:]) | set(dog_urls[:1])  # the best cat link is dead; one dog link arrives
    slots = assign_slots(plan, alive, {}, 2)
    assert [slots[(0, k)]["url"] for k in range(2)] == cat_urls[1:3]
    assert short_classes(slots, 2, 2) == {1: 1}
    # Later the best cat link and the second dog link arrive: filled slots keep their URLs, the empty one is filled.
    later = assign_slots(plan, alive | {cat_urls[0], dog_urls[1]}, slots, 2)
    assert {k: v["url"] for k, v in later.items() if k in slots} == {k: v["url"] for k, v in slots.items()}
    assert later[(1, 1)]["url"] == dog_urls[1] and short_classes(later, 2, 2) == {}


def test_index_round_trips_through_memory_fs(pool_index, tiny_clip):
    root, table, _ = pool_index
    info = build_index(str(root / "part-000.parquet"), tiny_clip, "memory://genbench-test/idx", factory="HNSW8")
    assert info.count == 1200
    local = build_index_from_embeddings(
        open_index(str(root / "flat")).index.reconstruct_n(0, 1200),
        pa.table({"url": table["URL"][:1200], "caption": table["TEXT"][:1200]}),
        str(root / "hnsw-local"),
        clip_ref="tiny",
        factory="HNSW8",
    )
    mem, loc = open_index("memory://genbench-test/idx"), open_index(str(root / "hnsw-local"))
    assert mem.info.factory == loc.info.factory == local.factory == "HNSW8"
    q = tiny_clip.encode_texts(CLASSES)
    s1, i1 = mem.search(q, 5)
    s2, i2 = loc.search(q, 5)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2, atol=1e-5)
    assert mem.metadata(i1[0]) == loc.metadata(i2[0])


def test_precomputed_embedding_column_is_normalised(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((300, 16)).astype(np.float32) * 7  # LAION-style column, not unit length
    table = pa.table({"url": [f"http://e/{i}" for i in range(300)], "caption": [f"c{i}" for i in range(300)],
                      "text_emb": pa.array(list(emb), pa.list_(pa.float32(), 16))})
    pq.write_table(table, tmp_path / "laion.parquet")
    info = build_index(str(tmp_path / "laion.parquet"), None, str(tmp_path / "idx"), embedding_column="text_emb", clip_ref="ViT-B-32:openai")
    assert (info.embeddings, info.dim, info.clip_slug) == ("precomputed", 16, "ViT-B-32_openai")
    idx = open_index(str(tmp_path / "idx"))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims, ids = idx.search(unit[:5], 1)
    assert list(ids[:, 0]) == [0, 1, 2, 3, 4] and np.allclose(sims[:, 0], 1.0, atol=1e-5)


def test_memory_budget_chooses_or_refuses(tmp_path):
    n, d = 10_000_000, 512
    assert choose_factory(n, d, None) == "Flat"
    assert choose_factory(n, d, estimate_bytes("Flat", n, d)) == "Flat"
    chosen = choose_factory(n, d, 2 * 1024**3)
    assert chosen.startswith("IVF") and "PQ" in chosen and estimate_bytes(chosen, n, d) <= 2 * 1024**3
    faiss.index_factory(d, chosen, faiss.METRIC_INNER_PRODUCT)  # a string faiss accepts
    with pytest.raises(UsageError, match="memory_budget_bytes"):
        choose_factory(n, d, 1024)
    meta = pa.table({"url": [f"u{i}" for i in range(500)], "caption": ["c"] * 500})
    x = np.random.default_rng(0).standard_normal((500, 32)).astype(np.float32)
    with pytest.raises(UsageError, match="memory_budget_bytes"):
        build_index_from_embeddings(x, meta, str(tmp_path / "a"), clip_ref="t", factory="Flat", memory_budget_bytes=1000)
    with pytest.raises(UsageError, match="factory"):
        build_index_from_embeddings(x, meta, str(tmp_path / "b"), clip_ref="t", factory="NotAFactory")
    with pytest.raises(UsageError, match="factory"):
        build_index_from_embeddings(x, meta, str(tmp_path / "c"), clip_ref="t", factory="IVF4096,Flat")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bad_inputs_name_the_field(tmp_path):
    with pytest.raises(UsageError, match="captions"):
        build_index(str(tmp_path / "none-*.parquet"), HashingEncoder(), str(tmp_path / "i"))
    with pytest.raises(UsageError, match="index"):
        open_index(str(tmp_path / "nothing"))
    meta = pa.table({"url": ["a", "b"], "caption": ["x", "y"]})
    with pytest.raises(UsageError, match="embeddings"):
        build_index_from_embeddings(np.ones((3, 4), np.float32), meta, str(tmp_path / "j"), clip_ref="t")


def _latent_vectors(n: int, d: int = 64, latent: int = 12, seed: int = 0) -> np.ndarray:
    """Unit vectors with a low intrinsic dimension plus noise: neighbours are not trivially separated."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, latent)))[0].T
    x = rng.standard_normal((n, latent)) @ basis + 0.08 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _recall10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))


def test_a_budgeted_index_meets_its_recall_target_at_the_settings_it_opens_with(tmp_path, caplog):
    n, d = 20_000, 64
    x = _latent_vectors(n + 300, d)
    base, fresh = x[:n], x[n:]  # fresh queries: not in the index, not in the tuning sample
    meta = pa.table({"url": [f"u{i}" for i in range(n)], "caption": ["c"] * n})
    budget = int(0.6 * estimate_bytes("Flat", n, d))  # no room for exact search; room for float16 re-ranking
    with caplog.at_level(logging.INFO, logger="genbench.retrieval.build"):
        info = build_index_from_embeddings(base, meta, str(tmp_path / "tuned"), clip_ref="t", memory_budget_bytes=budget,
                                           train_size=10_000, tune_queries=300)
    assert info.factory == "IVF128,PQ8,Refine(SQfp16)" and estimate_bytes(info.factory, n, d) <= budget
    assert info.recall_target == 0.95 and info.recall_at_10 >= 0.95 and info.tune_queries == 300
    assert set(info.search_params) == {"nprobe", "k_factor_rf"} and 1 <= info.search_params["nprobe"] <= 128
    assert json.loads((tmp_path / "tuned" / "index.json").read_text())["search_params"] == info.search_params
    assert "search parameters" in caplog.text

    idx = open_index(str(tmp_path / "tuned"))
    ivf = faiss.extract_index_ivf(idx.index)
    assert ivf.nprobe == info.search_params["nprobe"]
    truth = np.argsort(-(fresh @ base.T), axis=1)[:, :10]
    _, found = idx.search(fresh, 10)
    assert _recall10(found, truth) >= 0.9  # other queries than the tuning sample's: a little slack
    # Without the tuned settings (faiss's nprobe 1, no re-ranking depth) the same index misses most neighbours.
    idx.set_search_params(nprobe=1, k_factor_rf=1)
    _, found1 = idx.search(fresh, 10)
    assert _recall10(found1, truth) < 0.8


def test_an_unreachable_target_is_recorded_and_warned(tmp_path, caplog):
    n, d = 6000, 64
    x = _latent_vectors(n, d, seed=2)
    meta = pa.table({"url": [f"u{i}" for i in range(n)], "caption": ["c"] * n})
    with caplog.at_level(logging.WARNING, logger="genbench.retrieval.tuning"):
        info = build_index_from_embeddings(x, meta, str(tmp_path / "pq"), clip_ref="t", factory="IVF16,PQ4",
                                           train_size=4000, recall_target=0.99, tune_queries=100)
    assert info.recall_at_10 < 0.99 and set(info.search_params) == {"nprobe"}  # its best setting, recorded
    assert "< target 0.99" in caplog.text and "richer factory" in caplog.text
    exact = build_index_from_embeddings(x, meta, str(tmp_path / "flat"), clip_ref="t")
    assert exact.search_params == {} and exact.recall_at_10 is None  # exact search needs no tuning


@pytest.mark.parametrize("params", [{"nprobe": 1e12}, {"rm -rf": 1}, {"nprobe": True}, ["nprobe"]])
def test_hostile_search_params_in_index_json_are_refused(tmp_path, params):
    x = _latent_vectors(500, 16)
    meta = pa.table({"url": [f"u{i}" for i in range(500)], "caption": ["c"] * 500})
    build_index_from_embeddings(x, meta, str(tmp_path / "i"), clip_ref="t")
    path = tmp_path / "i" / "index.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "search_params": params}))
    with pytest.raises(UsageError, match="search_params"):
        open_index(str(tmp_path / "i"))
