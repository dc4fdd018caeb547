"""Adaptation inside a run, on the shared local Ray cluster with the toy models: each class's textual inversion (or
LoRA) is a task on the worker pool, committed atomically; the collections generated with them are named and
identified by the adaptation; a SIGKILLed worker loses no finished class and a rerun trains nothing; a class without
references follows the configured policy; bad settings exit 2 naming the field."""

from __future__ import annotations

import copy
import json
import logging
import os

import pytest
import webdataset as wds

from genbench.config import parse_config
from genbench.engine.experiment import build_collections
from genbench.engine.preflight import plan_jobs
from genbench.errors import UsageError
from genbench.models.cache import file_digest
from tests.helpers import tars, worker_killed_during

DATASET = "digits_rot"
GEN = {"source": "generated", "generator": "toy", "strategies": ["dt"], "shots": 2, "steps": 4,
       "guidance_scale": 3.0, "batch_size": 8}
TI = {**GEN, "adapt": {"method": "ti", "shots": 2, "steps": 4, "lr": 0.03, "batch_size": 4}}
LORA = {**GEN, "adapt": {"method": "lora", "shots": 2, "steps": 3, "lr": 0.008, "batch_size": 4}, "steps": 4,
        "guidance_scale": 3.0}
CONFIG = {"name": "adapt", "datasets": [DATASET], "clip": "toy", "seed": 0, "shard_size": 20, "sources": [TI, LORA],
          "engine": {"workers": 2}}


def _cfg(**changes) -> dict:
    cfg = copy.deepcopy(CONFIG)
    cfg.update(changes)
    return cfg


def _jobs(cfg: dict, root: str) -> list:
    return [p.job for p in plan_jobs(parse_config(copy.deepcopy(cfg)), root)]


def _records(adapt_dir: str) -> dict[str, dict]:
    return {n: json.load(open(os.path.join(adapt_dir, n))) for n in sorted(os.listdir(adapt_dir))
            if n.endswith(".json")}


def _adapt_dirs(root: str) -> dict[str, str]:
    base = os.path.join(root, DATASET, "adapt")
    return {d.split("-")[0]: os.path.join(base, d) for d in os.listdir(base)}


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("adapt") / "shards")
    jobs = build_collections(parse_config(copy.deepcopy(CONFIG)), root, progress=False)
    return root, jobs


def test_each_class_is_adapted_once_and_its_collection_names_the_adaptation(built):
    root, jobs = built
    ti_job, lora_job = jobs
    assert "_adapt-ti-" in ti_job.variant and "_adapt-lora-" in lora_job.variant
    dirs = _adapt_dirs(root)
    for job, method in ((ti_job, "ti"), (lora_job, "lora")):
        records = _records(dirs[method])
        assert sorted(records) == [f"c{c:04d}.json" for c in range(10)]
        manifest = json.load(open(os.path.join(job.uri, "manifest.json")))
        summary = manifest["adaptation"]
        assert summary["id"] == job.spec.adapt_id and summary["plain_classes"] == []
        # The manifest names each class's weights by digest, and they are the files on disk.
        for c in range(10):
            assert summary["units"][str(c)] == file_digest(os.path.join(dirs[method], f"c{c:04d}.safetensors"))
        assert summary["small_references"] == 20  # 8x8 digits: every reference is below 32 px, and said so
        assert manifest["complete"] is True
        assert all(f.endswith((".safetensors", ".json")) for f in os.listdir(dirs[method]))
    samples = list(wds.WebDataset(tars(ti_job.uri), shardshuffle=False, empty_check=False))
    assert len(samples) == 20
    for s in samples:
        meta = json.loads(s["json"])
        assert meta["adaptation"] == ti_job.spec.adapt_id
        assert f"<|digits_rot_{meta['class_name']}|>" in meta["prompt"], meta["prompt"]
    lora_samples = [json.loads(s["json"]) for s in wds.WebDataset(tars(lora_job.uri), shardshuffle=False,
                                                                   empty_check=False)]
    # Per-class adapters generate one class per batch, yet the shard keeps its slot order.
    assert [m["class_name"] for m in lora_samples[:10]] == [str(c) for c in range(10)]


def test_the_adaptation_is_part_of_the_collection_identity(tmp_path):
    root = str(tmp_path)
    base = {j.variant for j in _jobs(CONFIG, root)}
    more_steps = _cfg(sources=[{**TI, "adapt": {**TI["adapt"], "steps": 5}}, LORA])
    other_refs = _cfg(sources=[{**TI, "adapt": {**TI["adapt"], "shots": 3}}, LORA])
    plain = _cfg(sources=[GEN])
    variants = [j.variant for cfg in (more_steps, other_refs, plain) for j in _jobs(cfg, root)[:1]]
    assert len(set(variants)) == 3 and not set(variants) & base
    assert "adapt" not in variants[2]


def test_rerun_trains_nothing(built, caplog):
    root, _ = built
    before = {m: {n: os.stat(os.path.join(d, n)).st_mtime_ns for n in os.listdir(d)}
              for m, d in _adapt_dirs(root).items()}
    with caplog.at_level(logging.INFO, logger="genbench.engine.adaptation"):
        build_collections(parse_config(copy.deepcopy(CONFIG)), root, progress=False)
    assert not [r for r in caplog.records if "adaptation: training" in r.getMessage()]
    after = {m: {n: os.stat(os.path.join(d, n)).st_mtime_ns for n in os.listdir(d)}
             for m, d in _adapt_dirs(root).items()}
    assert after == before


def test_a_killed_worker_loses_no_finished_class_and_only_its_class_is_redone(built, ray_local, tmp_path, caplog):
    root = str(tmp_path / "shards")
    cfg = _cfg(sources=[{**TI, "adapt": {**TI["adapt"], "steps": 12}}])
    adapt_root = os.path.join(root, DATASET, "adapt")
    at_kill: dict[str, int] = {}

    def committed() -> list[str]:
        dirs = os.listdir(adapt_root) if os.path.isdir(adapt_root) else []
        return [os.path.join(adapt_root, d, n) for d in dirs for n in os.listdir(os.path.join(adapt_root, d))
                if n.endswith(".json")]

    # Once the first class is committed, the other worker is mid-class: it is killed, its class retried elsewhere.
    with worker_killed_during("adapt", lambda: bool(committed()),
                              lambda: at_kill.update({p: os.stat(p).st_mtime_ns for p in committed()})) as state:
        with caplog.at_level(logging.WARNING, logger="genbench.engine.dispatch"):
            build_collections(parse_config(copy.deepcopy(cfg)), root, progress=False)
    errors, killed = state["errors"], state["killed"]
    assert not errors and killed
    records = {p: json.load(open(p)) for p in committed()}
    assert len(records) == 10
    # Classes finished before the kill were not trained again; at most the class in flight on the killed worker
    # (one per worker at a time) was redone, by a live process.
    assert all(os.stat(p).st_mtime_ns == t for p, t in at_kill.items())
    retried = [r.getMessage() for r in caplog.records if "worker died" in r.getMessage() and "/c00" in r.getMessage()]
    assert len(retried) <= 1
    assert all(r["pid"] != killed[0] for p, r in records.items() if p not in at_kill)
    manifest = json.load(open(os.path.join(_jobs(cfg, root)[0].uri, "manifest.json")))
    assert manifest["complete"] is True and manifest["samples"] == 20


def test_a_class_without_references_is_plain_or_fatal_by_policy(tmp_path):
    from genbench.adapt.artefacts import ClassArtefacts
    from genbench.adapt.run import apply, train_unit
    from genbench.adapt.textual_inversion import TISettings
    from genbench.models.generator import load_generator

    gen = load_generator("toy")
    settings = TISettings(steps=1, lr=1e-2, batch_size=1)
    store = ClassArtefacts(str(tmp_path), "ti", {"base": "toy", "dataset": DATASET})
    with pytest.raises(UsageError, match=r"dataset 'digits_rot' class '3': no reference image left"):
        train_unit(gen.pipe, store, DATASET, "ti", settings, 3, lambda cls: [], 0, on_empty="fail")
    assert not store.done(3)
    facts = train_unit(gen.pipe, store, DATASET, "ti", settings, 3, lambda cls: [], 0, on_empty="plain")
    assert facts["plain"] and store.done(3) and store.plain(3)
    assert apply(gen.pipe, store, "toy", DATASET, 3) == "3"  # generated by the base model, under its own name
    assert not list(store.dir.glob("*.safetensors"))


@pytest.mark.parametrize("adapt,field", [
    ({"method": "ti", "steps": 0}, "sources[0].adapt.steps"),
    ({"method": "ti", "steps": 10**6}, "sources[0].adapt.steps"),
    ({"method": "lora", "rank": 0}, "sources[0].adapt.rank"),
    ({"method": "lora", "rank": 4096}, "sources[0].adapt.rank"),
    ({"method": "lora", "lr": 0}, "sources[0].adapt.lr"),
    ({"method": "ti", "lr": 3.0}, "sources[0].adapt.lr"),
    ({"method": "ti", "rank": 8}, "sources[0].adapt.rank"),
    ({"method": "ti", "scope": "dataset"}, "sources[0].adapt.scope"),
    ({"method": "dreambooth"}, "sources[0].adapt.method"),
    ({"steps": 10}, "sources[0].adapt.method"),
    ({"method": "ti", "on_empty": "ignore"}, "sources[0].adapt.on_empty"),
    ({"method": "ti", "filter": {"method": "clip"}}, "sources[0].adapt.filter"),
    ({"method": "ti", "colour": 1}, "sources[0].adapt.colour"),
])
def test_bad_adaptation_settings_are_refused_naming_the_field(adapt, field):
    with pytest.raises(UsageError) as err:
        parse_config(_cfg(sources=[{**GEN, "adapt": adapt}]))
    assert err.value.field == field


def test_bad_adaptation_settings_exit_2_in_one_line(tmp_path, capsys):
    import yaml

    from genbench.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_cfg(sources=[{**GEN, "adapt": {"method": "lora", "rank": 0}}])))
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["genbench: error: sources[0].adapt.rank: got 0; allowed: an integer >= 1 and <= 1024"]


def test_ce_and_the_null_generator_cannot_be_adapted_and_lora_samples_as_datadream_does():
    with pytest.raises(UsageError, match=r"sources\[0\]\.strategies"):
        parse_config(_cfg(sources=[{**TI, "strategies": ["dt", "ce"]}]))
    with pytest.raises(UsageError, match=r"sources\[0\]\.adapt"):
        parse_config(_cfg(sources=[{**TI, "generator": "null"}]))
    lora = {k: v for k, v in LORA.items() if k not in ("steps", "guidance_scale")}
    spec = parse_config(_cfg(sources=[lora])).sources[0].spec
    assert (spec.steps, spec.guidance_scale) == (50, 2.0)
    spec = parse_config(_cfg(sources=[{**lora, "steps": 7}])).sources[0].spec
    assert (spec.steps, spec.guidance_scale) == (7, 2.0)


def test_one_pipeline_keeps_each_datasets_adapter_apart(tmp_path):
    """One config entry's generation pipeline serves every dataset of the run: class 0 of digits and class 0 of
    digits_rot get their own LoRA adapters, each switched in for its own dataset."""
    from genbench.adapt.lora import LoRASettings
    from genbench.adapt.run import adapt_dataset, apply
    from genbench.models.generator import load_generator

    train = load_generator("toy")
    settings = LoRASettings(steps=1, batch_size=2)
    stores = {ds: adapt_dataset(train.pipe, "toy", ds, "lora", settings, 2, 0, str(tmp_path), classes=[0])
              for ds in ("digits", DATASET)}
    gen = load_generator("toy")
    active = {}
    for ds, store in stores.items():
        assert apply(gen.pipe, store, "toy", ds, 0) == "0"
        active[ds] = gen.pipe.get_active_adapters()
    assert active["digits"] != active[DATASET] and len(gen.pipe.get_list_adapters()["unet"]) == 2
    apply(gen.pipe, stores["digits"], "toy", "digits", 0)
    assert gen.pipe.get_active_adapters() == active["digits"]
