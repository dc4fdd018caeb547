"""`genbench plan`: every shipped config plans in-process without data (missing data is reported, exit 0), without
importing a model library or Ray; its counts match what `genbench run` writes; shards already there count as done;
estimates follow the throughput table and the config's prices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genbench.cli import main
from genbench.config import load_config, parse_config
from genbench.errors import UsageError
from genbench.planning import make_plan
from genbench.planning.throughput import load_table, parse_table

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "configs" / "paper").glob("*.yaml"))


def _plan_json(capsys, *argv: str) -> dict:
    assert main(["plan", *argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_shipped_config_plans_without_data(path, tmp_path, capsys):
    empty = tmp_path / "no-data"
    plan = _plan_json(capsys, str(path), "--out", str(tmp_path / "out"), "--data-root", str(empty))
    cfg = load_config(str(path))
    cols = plan["collections"]
    assert cols and {c["dataset"] for c in cols} == set(cfg.datasets)
    for c in cols:
        assert c["images"] == c["extent"] * c["num_classes"] == c["make_images"]
        assert c["shards"] == c["make_shards"] == -(-c["images"] // cfg.shard_size) and c["done_shards"] == 0
        assert c["estimate"]["usd"] is not None, c  # every shipped source has a rate or a price
    assert plan["totals"]["images"] == sum(c["images"] for c in cols)
    names = {d["name"]: d for d in plan["datasets"]}
    for name in cfg.datasets:
        if name.startswith("digits"):  # scikit-learn's bundled digits (digits_rot too) are always there
            assert not names[name]["missing"]
        else:  # missing, with the loaders' own message: where we looked and where the data comes from
            assert names[name]["missing"] and str(empty / name) in names[name]["get_it"]
            assert "the data comes from" in names[name]["get_it"]
    assert not os.path.exists(tmp_path / "out")  # a plan writes nothing
    if path.parent.name == "paper":
        assert not plan["ready"]
        assert main(["plan", str(path), "--out", str(tmp_path / "out"), "--data-root", str(empty)]) == 0
        text = capsys.readouterr().out
        assert "where to get the missing datasets" in text and "not ready" in text


def test_missing_index_and_weights_are_listed_with_where_to_get_them(tmp_path, capsys):
    t2 = _plan_json(capsys, str(REPO / "configs/paper/table2.yaml"), "--out", str(tmp_path / "o"))
    index = [p for p in t2["problems"] if p["field"].endswith(".index")]
    assert len(index) == 1 and "genbench index build" in index[0]["allowed"]
    retrieved = [c for c in t2["collections"] if c["source"] == "retrieved"]
    assert len(retrieved) == 22 and all(c["provisional"] for c in retrieved)  # its name gains the index's id
    fig4 = _plan_json(capsys, str(REPO / "configs/paper/fig4.yaml"), "--out", str(tmp_path / "o"))
    weights = [p for p in fig4["problems"] if p["field"] == "inception_weights"]
    assert len(weights) == 1 and "safetensors" in weights[0]["allowed"]


def test_run_refuses_missing_inception_weights_up_front(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(REPO / "configs/paper/fig4.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "inception_weights" in err and "data/weights/inception_v3.safetensors" in err
    assert not out.exists()


def test_plan_imports_no_model_library_and_starts_no_ray():
    code = ("import sys; from genbench.cli import main; "
            "rc = main(['plan', 'configs/paper/table2.yaml', '--out', '/nonexistent/out']); "
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'open_clip', 'diffusers', 'transformers', 'ray', 'webdataset')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0 []"


SMALL = {
    "name": "plan-vs-run", "datasets": ["digits"], "clip": "tiny", "seed": 0, "shard_size": 7,
    "sources": [
        {"source": "generated", "generator": "tiny", "strategies": ["dt"], "shots": 2, "steps": 1,
         "guidance_scale": 3.0, "batch_size": 10, "image_size": 16},
        {"source": "original", "shots": [1, 3]},
    ],
    "metrics": ["zeroshot", "cler"],
    "engine": {"workers": 1},
}


def test_plan_counts_match_what_run_writes(ray_local, tmp_path, capsys, caplog):
    path, out = tmp_path / "small.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(SMALL))
    before = _plan_json(capsys, str(path), "--out", str(out))
    assert before["ready"] and [(c["source"], c["images"], c["shards"]) for c in before["collections"]] == [
        ("generated", 20, 3), ("original", 30, 5)]

    with caplog.at_level("INFO", logger="genbench"):
        assert main(["--no-progress", "run", str(path), "--out", str(out)]) == 0
    assert any("plan:" in r.getMessage() and "plan-vs-run" in r.getMessage() for r in caplog.records)  # printed first
    capsys.readouterr()
    for c in before["collections"]:
        manifest = json.loads((Path(c["uri"]) / "manifest.json").read_text())
        assert manifest["samples"] == c["images"] and len(manifest["shards"]) == c["shards"]
        assert len([f for f in os.listdir(c["uri"]) if f.endswith(".tar")]) == c["shards"]

    after = _plan_json(capsys, str(path), "--out", str(out))
    for c in after["collections"]:
        assert (c["done_shards"], c["make_shards"], c["make_images"]) == (c["shards"], 0, 0)
        assert c["estimate"]["usd"] == 0.0

    # Fewer shots are a prefix: the collection keeps its extent and nothing is to make. A lost tar is made again.
    fewer = {**SMALL, "sources": [SMALL["sources"][0], {"source": "original", "shots": [1]}]}
    path.write_text(yaml.safe_dump(fewer))
    original = next(c for c in before["collections"] if c["source"] == "original")
    os.remove(Path(original["uri"]) / "000002.tar")
    plan = make_plan(parse_config(fewer), str(out))
    got = {p.collection.job.source: p.collection for p in plan.collections}
    assert got["original"].extent == 3 and got["original"].make_shards == 1 and got["original"].make_images == 7
    assert got["generated"].make_images == 0
    # A tar whose CLIP sidecar is gone is only embedded again; other settings under the same name are a conflict.
    generated = Path(next(c for c in before["collections"] if c["source"] == "generated")["uri"])
    os.remove(generated / "emb" / "tiny" / "000000.parquet")
    again = make_plan(parse_config(fewer), str(out)).collections[0].collection
    assert (again.embed_shards, again.make_shards, again.make_images) == (1, 0, 0)
    plan = make_plan(parse_config({**fewer, "shard_size": 5}), str(out))
    assert [(p.field, p.value) for p in plan.problems] == [("out", c["uri"]) for c in before["collections"]]
    assert "shard_size" in plan.problems[0].allowed and not plan.ready


def test_names_are_final_once_the_index_exists_and_ra_names_what_it_reads(tmp_path):
    index = tmp_path / "captions-index"
    cfg = parse_config({"name": "ra", "datasets": ["digits"], "clip": "tiny", "sources": [
        {"source": "generated", "generator": "tiny", "strategies": ["dt", "ra"], "shots": 2, "ra_shots": 2},
        {"source": "retrieved", "index": str(index), "shots": 2}]})
    before = make_plan(cfg, str(tmp_path / "out"))
    assert [(c.collection.job.variant, c.collection.provisional) for c in before.collections] == [
        ("tiny_dt_s0", False), ("tiny_ra_rak2_s0", True), ("captions-index_s0", True)]
    assert [p.field for p in before.problems] == ["sources[1].index"]
    index.mkdir()  # what `genbench index build` writes last: index.json
    (index / "index.json").write_text(json.dumps({
        "path": str(index), "clip": "tiny", "clip_slug": "tiny", "dim": 32, "factory": "Flat", "count": 3,
        "build_s": 0.1, "index_bytes": 10, "embeddings": "computed", "format_version": 1, "id": "0123456789abcdef"}))
    after = make_plan(cfg, str(tmp_path / "out"))
    names = [c.collection.job.variant for c in after.collections]
    assert not after.problems and not any(c.collection.provisional for c in after.collections)
    assert names[0] == "tiny_dt_s0" and names[2] == "captions-index-01234567_s0"
    assert names[1].startswith("tiny_ra_") and "from-" in names[1]  # RA's name records the collection it reads


def test_estimates_follow_the_table_and_the_prices(tmp_path):
    cfg = load_config(str(REPO / "configs/paper/fig2-fig3.yaml"))
    by_source = {}
    for pc in make_plan(cfg, str(tmp_path / "o")).collections:
        by_source.setdefault(pc.collection.job.source, []).append(pc)
    gen = by_source["generated"][0]
    images = gen.collection.make_images
    assert gen.estimate.device == "a100" and gen.estimate.status == "estimate"
    assert gen.estimate.device_hours == pytest.approx(images * 1.74 / 1000)  # Table 5: 1.74 GPU-hours per 1,000
    assert gen.estimate.usd == pytest.approx(images * 1.74 / 1000 * 1.47)
    ret = by_source["retrieved"][0]
    assert ret.estimate.usd == pytest.approx(ret.collection.make_images * 0.60 * 0.21 / 1000)  # 0.60 h of 32 vCPU
    orig = by_source["original"][0]
    assert orig.estimate.usd == pytest.approx(orig.collection.make_images * 1.2e-2) and orig.estimate.device is None
    h100 = make_plan(cfg, str(tmp_path / "o"), device="h100").collections[0].estimate
    assert h100.device_hours == pytest.approx(images / 10.0 / 3600)  # 10 images/s at the default 25 steps
    with pytest.raises(UsageError, match="--device"):
        make_plan(cfg, str(tmp_path / "o"), device="tpu")


def test_rates_are_scaled_by_steps_and_unknown_generators_have_no_figure(tmp_path):
    table = load_table()
    tiny = table.generator_rate("tiny", None)
    assert tiny.status == "measured" and tiny.scaled(4) == (pytest.approx(25.5 * 2 / 4), "scaled from 2 to 4 steps")
    assert table.generator_rate("tiny", "h100") is None and table.generator_rate("my/finetune", None) is None
    cfg = parse_config({"name": "x", "datasets": ["digits"], "clip": "tiny",
                        "sources": [{"source": "generated", "generator": "null", "shots": 1}]})
    est = make_plan(cfg, str(tmp_path / "o"), device="a100").collections[0].estimate
    assert est.usd is None and est.status == "no figure" and "throughput.yaml" in est.basis


def test_adaptation_still_to_train_is_in_the_estimate_once_per_adaptation(tmp_path):
    gen = {"source": "generated", "generator": "toy", "strategies": ["dt", "st"], "shots": 16, "steps": 20,
           "adapt": {"method": "ti", "shots": 5, "steps": 60}}
    cfg = parse_config({"name": "x", "datasets": ["digits_rot"], "clip": "toy", "sources": [gen]})
    dt, st = make_plan(cfg, str(tmp_path / "o")).collections
    generation = dt.collection.make_images / 48.0 / 3600  # the toy generator's measured 48 images/s at 20 steps
    assert dt.estimate.device_hours == pytest.approx(generation + 10 * 60 / 30.0 / 3600)  # 10 classes x 60 steps
    assert "adaptation: 10 unit(s) x 60 ti steps at 30 steps/s" in dt.estimate.basis
    assert st.estimate.device_hours == pytest.approx(generation)  # the same adaptation: counted once
    table = load_table()
    assert table.adaptation_rate("stabilityai/stable-diffusion-2-1-base", None).images_per_second == 1.67
    assert table.adaptation_rate("tiny", None) is None


@pytest.mark.parametrize("change,where", [
    (lambda t: t["generators"][0]["adaptation"][0].pop("steps_per_second"), "adaptation[0].steps_per_second"),
    (lambda t: t["generators"][0]["rates"][0].update(status="guess"), "generators[0].rates[0].status"),
    (lambda t: t["generators"][0]["rates"][0].pop("basis"), "generators[0].rates[0].basis"),
    (lambda t: t["generators"][0]["rates"][0].update(images_per_second=3), "generators[0].rates[0]"),
    (lambda t: t["generators"][1]["rates"][0].update(device="tpu"), "generators[1].rates[0].device"),
    (lambda t: t["sources"]["retrieved"][0].update(hours_per_1000_images=-1), "hours_per_1000_images"),
    (lambda t: t.update(colour="red"), "throughput.colour"),
])
def test_a_bad_throughput_table_names_the_place(change, where):
    data = yaml.safe_load((REPO / "genbench" / "planning" / "throughput.yaml").read_text())
    change(data)
    with pytest.raises(UsageError) as err:
        parse_table(data)
    assert where in err.value.field
