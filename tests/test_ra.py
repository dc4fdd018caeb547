"""RA, retrieval-augmented generation, end to end: a retrieved collection is built from a real loopback HTTP server and
a tiny caption index, then in the same run the RA collections start each image from a retrieved image of its class
(img2img, and an IP-Adapter image prompt with tiny random IP-Adapter weights). Read back with webdataset; resumable
byte-identical; a config with RA but no retrieved source is refused up front."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import webdataset as wds
import yaml

from genbench.cli import main
from genbench.config import parse_config
from genbench.engine.experiment import build_collections
from genbench.engine.preflight import plan_jobs
from genbench.errors import UsageError
from genbench.seeds import sample_seed
from tests.helpers import snapshot, tars, write_captions
from tests.http_server import Route, serve
from tests.test_retrieval_e2e import _png, _query_vectors

EMPTY_CLASS = 9  # every image of this class is a dead link: RA has nothing to start from
RA_SHOTS = 3


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Per digit class 5 on-topic captions (class 9's all dead links) and 100 distractors, with precomputed text
    embeddings near each class's query (as tests/test_retrieval_e2e.py explains)."""
    tmp = tmp_path_factory.mktemp("ra-pool")
    rng = np.random.default_rng(1)
    queries = _query_vectors()
    routes, urls, captions, vectors = {}, [], [], []
    for c in range(10):
        for i in range(5):
            path = f"/img/{c}/{i}.png"
            if c != EMPTY_CLASS:
                routes[path] = Route(body=_png(20 * c + 30, rng), content_type="image/png")
            urls.append(path)
            captions.append(f"a handwritten digit {c}, sample {i}")
            vectors.append(queries[c] + rng.normal(0, 0.02, queries.shape[1]))
    for i in range(100):
        urls.append(f"/other/{i}.png")
        captions.append(f"a photo of something else {i}")
        vectors.append(rng.normal(0, 1, queries.shape[1]))
    with serve(routes) as base:
        write_captions(str(tmp / "captions-0.parquet"), base, urls, captions, vectors)
        yield tmp, routes


@pytest.fixture(scope="module")
def index_dir(pool, ray_local):
    tmp, _ = pool
    out = tmp / "index"
    assert main(["index", "build", "--captions", str(tmp / "captions-*.parquet"), "--clip", "tiny", "--out", str(out),
                 "--embedding-column", "text_embedding"]) == 0
    return str(out)


@pytest.fixture(scope="module")
def ip_adapter(tmp_path_factory):
    """Tiny IP-Adapter weights for the tiny generator, laid out as h94/IP-Adapter ships them: a safetensors file with
    ``image_proj.*`` and ``ip_adapter.<n>.to_{k,v}_ip.weight`` (one pair per cross-attention layer, n = 1, 3, 5, ...)
    and a CLIP vision encoder in ``image_encoder/``. Random weights, scaled up so the image prompt visibly matters."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from genbench.models.build import built_pipeline_dir

    cfg = json.loads((built_pipeline_dir("tiny-sd") / "unet" / "config.json").read_text())
    cross, widths = cfg["cross_attention_dim"], cfg["block_out_channels"]
    out = tmp_path_factory.mktemp("ip-adapter")
    torch.manual_seed(0)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, projection_dim=16, initializer_factor=30.0))
    encoder.save_pretrained(str(out / "image_encoder"))
    state = {"image_proj.proj.weight": torch.randn(4 * cross, 16) * 0.2, "image_proj.proj.bias": torch.zeros(4 * cross),
             "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    # Cross-attention layers in the order diffusers numbers them (its UNet's attn_processors): down blocks, up blocks
    # (one more layer each), then the mid block.
    down = [w for w, t in zip(widths, cfg["down_block_types"]) if t.startswith("CrossAttn")]
    up = [w for w, t in zip(reversed(widths), cfg["up_block_types"]) if t.startswith("CrossAttn")]
    per_block = cfg["layers_per_block"]
    hidden = [w for w in down for _ in range(per_block)] + [w for w in up for _ in range(per_block + 1)] + [widths[-1]]
    for n, h in zip(range(1, 2 * len(hidden), 2), hidden):
        state[f"ip_adapter.{n}.to_k_ip.weight"] = torch.randn(h, cross) * 0.2
        state[f"ip_adapter.{n}.to_v_ip.weight"] = torch.randn(h, cross) * 0.2
    save_file(state, str(out / "ip-adapter_tiny.safetensors"))
    return str(out / "ip-adapter_tiny.safetensors")


GEN = {"source": "generated", "generator": "tiny", "strategies": ["ra"], "shots": 2, "steps": 2, "guidance_scale": 3.0,
       "batch_size": 4, "resolution": 32, "ra_shots": RA_SHOTS, "ra_strength": 0.5}


def _retrieved_entry(index: str, **extra) -> dict:
    return {"source": "retrieved", "index": index, "shots": RA_SHOTS, "oversample": 1.5, "image_size": 16,
            "allow_addresses": ["127.0.0.0/8"], **extra}


def _cfg(index: str, ip_adapter: str) -> dict:
    # The RA entries come first: the run builds the retrieved collection before them whatever the config's order.
    return {"name": "ra", "datasets": ["digits"], "clip": "tiny", "shard_size": 10, "engine": {"workers": 1},
            "sources": [GEN, {**GEN, "ra_ip_adapter": ip_adapter, "ra_ip_scale": 1.0}, _retrieved_entry(index)]}


def _collections(out: str) -> dict[str, str]:
    """kind or 'ra'/'ra-ip' -> collection directory."""
    found = {}
    for kind in ("generated", "retrieved"):
        for variant in os.listdir(os.path.join(out, "digits", kind)):
            name = kind if kind == "retrieved" else ("ra-ip" if "_ipa-" in variant else "ra")
            found[name] = os.path.join(out, "digits", kind, variant)
    return found


def _manifest(coll: str) -> dict:
    with open(os.path.join(coll, "manifest.json")) as f:
        return json.load(f)


def _read(coll: str) -> list[dict]:
    return list(wds.WebDataset(tars(coll), shardshuffle=False, empty_check=False).decode("rgb8"))


@pytest.fixture(scope="module")
def made(index_dir, ip_adapter, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ra-run") / "shards")
    cfg = parse_config(_cfg(index_dir, ip_adapter))
    build_collections(cfg, out, progress=False)
    return cfg, out


def test_ra_collections_start_from_retrieved_images_of_their_class(made):
    cfg, out = made
    colls = _collections(out)
    retrieved = {s["__key__"]: s for s in _read(colls["retrieved"])}
    rname = os.path.basename(colls["retrieved"])
    present = {c: sorted(int(k[-6:]) for k in retrieved if int(k[1:5]) == c and int(k[-6:]) < RA_SHOTS)
               for c in range(10)}
    assert present[EMPTY_CLASS] == [] and all(len(present[c]) == RA_SHOTS for c in range(9))
    images = {}
    for name in ("ra", "ra-ip"):
        coll = colls[name]
        assert "_from-" in os.path.basename(coll) and os.path.basename(coll).startswith("tiny_ra_")
        samples = _read(coll)
        assert sorted(s["__key__"] for s in samples) == sorted(f"c{c:04d}-k{k:06d}" for c in range(9) for k in range(2))
        for s in samples:
            meta, cls, shot = s["json"], s["json"]["cls"], s["json"]["shot"]
            assert meta["strategy"] == "ra" and meta["retrieved_collection"] == rname
            # The start is the class's retrieved shot at or after a seeded offset in [0, ra_shots), wrapping.
            start = sample_seed(cfg.seed, "digits", cls, shot, purpose="ra-init") % RA_SHOTS
            want = next(k for k in present[cls] + [k + RA_SHOTS for k in present[cls]] if k >= start) % RA_SHOTS
            assert meta["retrieved_key"] == f"c{cls:04d}-k{want:06d}"
            assert meta["retrieved_url"] == retrieved[meta["retrieved_key"]]["json"]["url"]
            assert s["jpg"].shape == (32, 32, 3)
        images[name] = np.stack([s["jpg"] for s in samples]).astype(float)
        man = _manifest(coll)
        assert man["shortfall"] == {"missing_samples": 2, "missing_shards": 0, "per_class": {str(EMPTY_CLASS): 2}}
        assert man["bad_samples"]["count"] == 2 and man["ra"]["classes_without_retrieved"] == [EMPTY_CLASS]
        options = man["spec"]["options"]
        assert options["ra_retrieved_name"] == rname and options["ra_shots"] == RA_SHOTS
    # The IP-Adapter collection conditions on the same retrieved images through another path: other images.
    assert np.abs(images["ra"] - images["ra-ip"]).mean() > 1.0
    ip_opts = _manifest(colls["ra-ip"])["spec"]["options"]
    assert ip_opts["ra_ip_scale"] == 1.0 and len(ip_opts["ra_ip_adapter_id"]) == 12 and "ra_strength" not in ip_opts


def test_the_plan_of_the_ra_run_counts_what_the_run_made(made):
    """`genbench plan` after the run: the retrieved and both RA collections under their final names, every shard
    done, and each collection's slots = the samples written + the slots recorded as short (class 9's)."""
    from genbench.planning.plan import make_plan

    cfg, out = made
    plan = make_plan(cfg, os.path.dirname(out))  # the run's shards root is <out>/shards
    found = {}
    for entry in plan.collections:
        c = entry.collection
        manifest = _manifest(c.planned.job.uri)
        assert not c.provisional and c.shards == len(manifest["shards"]) == c.done_shards and c.make_shards == 0
        assert c.images == manifest["samples"] + manifest["shortfall"]["missing_samples"]
        found[c.planned.job.source] = found.get(c.planned.job.source, 0) + 1
    assert found == {"generated": 2, "retrieved": 1}


def test_an_ra_image_is_made_from_the_retrieved_image_its_json_names(made):
    """Regenerating a stored RA sample from the retrieved image its json names gives its pixels back; starting from
    another class's retrieved image gives other pixels, so the retrieved image really is where generation starts."""
    import io

    from PIL import Image

    from genbench.models.generator import load_generator

    cfg, out = made
    colls = _collections(out)
    retrieved = {s["__key__"]: s for s in _read(colls["retrieved"])}
    raw = list(wds.WebDataset(tars(colls["ra"]), shardshuffle=False, empty_check=False))
    sample = next(s for s in raw if json.loads(s["json"])["cls"] == 3)
    meta = json.loads(sample["json"])
    stored = np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("RGB"), dtype=float)
    generator = load_generator("tiny", device="cpu")

    def regenerate(key: str) -> np.ndarray:
        init = Image.fromarray(retrieved[key]["jpg"])
        (image,) = generator.generate([meta["prompt"]], [meta["negative_prompt"]], [meta["seed"]], steps=GEN["steps"],
                                      guidance_scale=GEN["guidance_scale"], height=32, width=32, init_images=[init],
                                      strength=GEN["ra_strength"])
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=95)
        return np.asarray(Image.open(buf).convert("RGB"), dtype=float)

    # Another process and thread count may move a float a little; a different start image moves it much more.
    own = np.abs(regenerate(meta["retrieved_key"]) - stored).mean()
    other = next(k for k in retrieved if int(k[1:5]) == 7)
    assert own < 0.5 and np.abs(regenerate(other) - stored).mean() > max(1.0, 4 * own)


def test_rerun_after_a_deleted_ra_shard_remakes_only_it_byte_identical(made, pool):
    cfg, out = made
    _, routes = pool
    colls = _collections(out)
    before = {name: snapshot(c) for name, c in colls.items()}
    hits = {p: r.hits for p, r in routes.items()}
    os.remove(os.path.join(colls["ra"], "000001.tar"))
    build_collections(cfg, out, progress=False)
    after = {name: snapshot(c) for name, c in colls.items()}
    assert {p: r.hits for p, r in routes.items()} == hits  # nothing downloaded again
    assert after["retrieved"] == before["retrieved"] and after["ra-ip"] == before["ra-ip"]
    assert after["ra"]["000001.tar"][0] == before["ra"]["000001.tar"][0]  # the same bytes, made again
    assert after["ra"]["000001.tar"][1] != before["ra"]["000001.tar"][1]
    for kept in ("000000.tar", "stats/000000.json"):
        assert after["ra"][kept] == before["ra"][kept]  # untouched


def test_another_retrieved_collection_names_another_ra_collection(index_dir, tmp_path):
    def ra_variants(*retrieved: dict, **gen) -> list[str]:
        cfg = parse_config({"name": "ra", "datasets": ["digits"], "clip": "tiny",
                            "sources": [{**GEN, **gen}, *retrieved]})
        return [p.job.variant for p in plan_jobs(cfg, str(tmp_path)) if p.job.source == "generated"]

    (a,) = ra_variants(_retrieved_entry(index_dir))
    (b,) = ra_variants(_retrieved_entry(index_dir, image_size=24))
    assert a != b and a.startswith("tiny_ra_") and b.startswith("tiny_ra_")
    two = (_retrieved_entry(index_dir), _retrieved_entry(index_dir, image_size=24))
    with pytest.raises(UsageError) as err:
        ra_variants(*two)
    assert err.value.field == "sources[0].ra_from"
    assert ra_variants(*two, ra_from=1) == [a] and ra_variants(*two, ra_from=2) == [b]
    with pytest.raises(UsageError) as err:
        ra_variants(_retrieved_entry(index_dir), ra_shots=RA_SHOTS + 1)
    assert err.value.field == "sources[0].ra_shots"


@pytest.mark.parametrize("gen,field", [
    ({}, "sources[0].strategies"),
    ({"strategies": ["dt"], "per_dataset": {"digits": ["dt", "ra"]}}, "sources[0].per_dataset.digits"),
    ({"ra_ip_adapter": "no/such/ip-adapter.safetensors"}, "sources[0].ra_ip_adapter"),
])
def test_refused_up_front_without_a_retrieved_source_or_ip_adapter_weights(gen, field, tmp_path, capsys):
    cfg = {"name": "ra", "datasets": ["digits"], "clip": "tiny", "sources": [{**GEN, **gen}]}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"genbench: error: {field}:"), err
    assert not out.exists()


def test_a_collection_is_built_after_what_it_reads_and_not_from_a_failed_one():
    from types import SimpleNamespace

    from genbench.engine import collections as coll

    def state(uri: str, after: tuple = ()) -> coll.CollectionState:
        planned = SimpleNamespace(job=SimpleNamespace(uri=uri), after=after)
        return coll.CollectionState(planned, None, [], None, pending=[SimpleNamespace(label=f"{uri}/000000")])

    ra, retrieved, other = state("ra", ("retrieved",)), state("retrieved"), state("other")
    states = [ra, retrieved, other]
    assert coll.stages(states) == [[retrieved, other], [ra]]
    assert coll.ready([ra], states) == [ra]
    retrieved.failed["retrieved/000001"] = "worker died"
    assert coll.ready([ra], states) == [] and ra.pending == []
    assert "reads retrieved" in ra.failed["ra/000000"]


def test_each_sample_has_its_own_image_prompt_whatever_its_batch(ip_adapter):
    """diffusers tiles one image prompt over a batch; RA's samples each have their own, so sample i must not depend on
    the others in its call."""
    from PIL import Image

    from genbench.models.generator import load_generator

    gen = load_generator("tiny", device="cpu", ip_adapter=ip_adapter)
    rng = np.random.default_rng(0)
    prompts = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    kw = {"steps": 2, "guidance_scale": 3.0, "height": 32, "width": 32, "ip_adapter_scale": 1.0}
    batch = gen.generate(["a digit 1"] * 3, [None] * 3, [7, 7, 7], ip_adapter_images=prompts, **kw)
    alone = gen.generate(["a digit 1"], [None], [7], ip_adapter_images=prompts[1:2], **kw)
    pixels = [np.asarray(im, dtype=float) for im in batch]
    assert np.array_equal(np.asarray(alone[0], dtype=float), pixels[1])
    assert np.abs(pixels[0] - pixels[1]).mean() > 1.0  # same prompt and seed: only the image prompt differs
    with pytest.raises(UsageError) as err:
        load_generator("tiny", device="cpu").generate(["a"], [None], [1], ip_adapter_images=prompts[:1], **kw)
    assert err.value.field == "ip_adapter_images"


def test_ti_learns_from_filtered_retrieved_images_and_a_class_left_without_follows_on_empty(made, index_dir,
                                                                                            ip_adapter):
    """Textual inversion on the run's retrieved collection (the paper's Table 3 "TI on retrieved"): each class's
    retrieved images pass the caption filter (tiny BLIP-2 and BERT) before training; class 9, whose links are all
    dead, has none: generated without adaptation under on_empty: plain, named in an exit-2 error under fail, with
    every other class kept."""
    from genbench.adapt.filtering import NoReferences

    _, out = made
    adapt = {"method": "ti", "references": "retrieved", "shots": RA_SHOTS, "steps": 2, "batch_size": 2,
             "filter": {"method": "caption", "captioner": "tiny", "text_model": "tiny", "threshold": -1.0}}
    ti = {**GEN, "strategies": ["dt"], "adapt": adapt}
    cfg = _cfg(index_dir, ip_adapter)
    cfg["sources"] = [ti, _retrieved_entry(index_dir)]
    job = build_collections(parse_config(cfg), out, progress=False)[0]
    summary = _manifest(job.uri)["adaptation"]
    assert summary["references"] == "retrieved" and summary["plain_classes"] == [str(EMPTY_CLASS)]
    assert all(summary["units"][str(c)] != "plain" for c in range(10) if c != EMPTY_CLASS)
    records = {n: json.load(open(os.path.join(summary["artefacts"], n)))
               for n in os.listdir(summary["artefacts"]) if n.endswith(".json")}
    seen = records["c0000.json"]["filter"]["0"]  # every candidate's caption and similarity, kept at threshold -1
    assert (seen["candidates"], seen["kept"], seen["method"]) == (RA_SHOTS, RA_SHOTS, "caption")
    assert len(seen["per_candidate"]) == RA_SHOTS and all("caption" in c for c in seen["per_candidate"])
    for s in _read(job.uri):
        meta = s["json"]
        named = meta["class_name"] if int(s["cls"]) == EMPTY_CLASS else f"<|digits_{meta['class_name']}|>"
        assert named in meta["prompt"], meta["prompt"]

    cfg["sources"][0] = {**ti, "adapt": {**adapt, "steps": 1, "on_empty": "fail", "filter": {"method": "none"}}}
    with pytest.raises(NoReferences) as err:
        build_collections(parse_config(cfg), out, progress=False)
    assert err.value.field == "adapt.on_empty" and f"class '{EMPTY_CLASS}'" in str(err.value)
    ti_dirs = [d for d in os.listdir(os.path.join(out, "digits", "adapt")) if d != os.path.basename(summary["artefacts"])]
    done = sorted(n for n in os.listdir(os.path.join(out, "digits", "adapt", ti_dirs[0])) if n.endswith(".json"))
    assert done == [f"c{c:04d}.json" for c in range(10) if c != EMPTY_CLASS]  # the other classes are kept
