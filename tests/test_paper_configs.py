"""configs/paper/: one config per table and figure of the paper, holding the paper's settings (the facts this
repository keeps in genbench/report/paper.py and genbench/cost.py). Each loads without any dataset, index or weights
file present."""

from __future__ import annotations

from pathlib import Path

import pytest

from genbench.config import ExperimentConfig, load_config
from genbench.metrics import registry
from genbench.report.paper import FIG4_LEFT_OUT

PAPER = Path(__file__).resolve().parent.parent / "configs" / "paper"
# Table 2's columns, in the paper's order (catalog names).
TABLE2_DATASETS = ("imagenet_1k", "caltech101", "cifar10", "cifar100", "country211", "dtd", "eurosat", "fer2013",
                   "fgvc_aircraft", "food101", "gtsrb", "hateful_memes", "kitti_distance", "mnist", "oxford_flowers102",
                   "oxford_pets", "pcam", "rendered_sst2", "resisc45", "stanford_cars", "sun397", "voc2007")
# Left out of the correlation study: the report's Fig. 4 and the config must leave out the same four.
FEW_CLASSES = set(FIG4_LEFT_OUT)
CORRELATION_DATASETS = tuple(d for d in TABLE2_DATASETS if d not in FEW_CLASSES)
SD21 = "stabilityai/stable-diffusion-2-1-base"


def _cfg(name: str) -> ExperimentConfig:
    return load_config(str(PAPER / f"{name}.yaml"))


def _by_kind(cfg: ExperimentConfig) -> dict[str, object]:
    kinds = [s.kind for s in cfg.sources]
    assert len(kinds) == len(set(kinds)), kinds
    return {s.kind: s.spec for s in cfg.sources}


def test_every_table_and_figure_has_a_config_that_says_what_it_reproduces():
    names = sorted(p.stem for p in PAPER.glob("*.yaml"))
    assert names == ["fig10", "fig11-rn50", "fig11-vit-b-16", "fig11-vit-b-32", "fig11-vit-l-14", "fig2-fig3", "fig4",
                     "fig5", "fig6", "fig9", "table2", "table3-ti"]
    for path in PAPER.glob("*.yaml"):
        head = path.read_text().splitlines()[0]
        what = path.stem.replace("table", "Table ").replace("fig", "Fig. ").split("-")[0]
        assert head.startswith("# ") and what in head and "GenBench paper" in head, (path.name, head)
        cfg = load_config(str(path))
        assert cfg.out == f"out/paper/{path.stem}" and cfg.name == f"paper-{path.stem}" and cfg.seed == 0


def test_table2_is_sd21_base_under_the_seven_strategies_on_22_datasets_at_20_shots():
    cfg = _cfg("table2")
    assert cfg.datasets == TABLE2_DATASETS and cfg.clip == "ViT-B-32:openai"
    src = _by_kind(cfg)
    gen = src["generated"]
    assert gen.generator == SD21 and gen.shots == (20,)
    assert gen.strategies == ("st", "ce", "dt", "np", "np+rd", "rd", "ra")  # "DT w/ NP" and "DT w/ NP, RD" as aliases
    assert src["retrieved"].shots == (20,) and src["retrieved"].index.startswith("data/")  # RA's image prompts
    assert {"zeroshot", "cler", "cler_text"} <= set(cfg.metrics)
    assert (cfg.pricing.usd_per_hour, cfg.pricing.cpu_usd_per_hour, cfg.pricing.labelling_usd_per_image) == (
        1.47, 0.21, 1.2e-2)


def test_table3_is_plain_sd_against_ti_on_5_original_shots_and_on_filtered_retrieved_images():
    cfg = _cfg("table3-ti")
    assert len(cfg.datasets) == 17 and set(cfg.datasets) < set(TABLE2_DATASETS) and cfg.clip == "ViT-B-32:openai"
    gens = [s.spec for s in cfg.sources if s.kind == "generated"]
    assert all(g.generator == SD21 and g.shots == (5, 100) and g.strategies == ("dt",) for g in gens)
    plain, original, retrieved = (g.adapt for g in gens)
    assert plain is None
    assert (original.method, original.references, original.shots, original.steps) == ("ti", "original", 5, 1000)
    assert (retrieved.method, retrieved.references, retrieved.shots, retrieved.steps) == ("ti", "retrieved", 100, 1000)
    f = retrieved.filter
    assert (f.method, f.threshold, f.captioner, f.text_model) == ("caption", 0.8, "Salesforce/blip2-opt-2.7b",
                                                                    "bert-base-uncased")
    assert [s.spec.shots for s in cfg.sources if s.kind == "retrieved"] == [(100,)]


def test_fig10_fine_tunes_clip_on_5_shot_generated_and_original_data():
    cfg = _cfg("fig10")
    assert len(cfg.datasets) == 4 and cfg.clip == "ViT-B-32:openai"
    src = _by_kind(cfg)
    assert src["generated"].shots == (5,) and src["original"].shots == (5,)
    assert cfg.finetune.shots == (5,) and cfg.finetune.settings.mode == "lora" and cfg.finetune.wants("generated", 5)


def test_fig2_fig3_sweep_three_sources_from_1_to_500_shots_as_prefixes():
    cfg = _cfg("fig2-fig3")
    src = _by_kind(cfg)
    assert set(src) == {"generated", "retrieved", "original"} and cfg.datasets == TABLE2_DATASETS
    for spec in src.values():
        assert spec.shots[0] == 1 and spec.shots[-1] == 500 and list(spec.shots) == sorted(set(spec.shots))


def test_fig4_and_fig5_use_100_shot_generated_data_on_18_datasets():
    fig4, fig5 = _cfg("fig4"), _cfg("fig5")
    for cfg in (fig4, fig5):
        assert cfg.datasets == CORRELATION_DATASETS
        gen = _by_kind(cfg)["generated"]
        assert gen.generator == SD21 and gen.shots == (100,) and cfg.inception_weights.startswith("data/")
    assert {"linear_probe", "clip_score", "fid", "cler"} <= set(fig4.metrics)
    assert set(fig5.metrics) == set(registry.names())  # Fig. 5 times every metric
    # Same collections: fig5 run into fig4's output finds them done.
    assert _by_kind(fig4)["generated"] == _by_kind(fig5)["generated"] and fig4.shard_size == fig5.shard_size


def test_fig6_retrieves_for_every_dataset_beside_generated_data():
    cfg = _cfg("fig6")
    src = _by_kind(cfg)
    assert cfg.datasets == TABLE2_DATASETS and set(src) == {"retrieved", "generated"}
    table2 = _by_kind(_cfg("table2"))
    assert src["retrieved"] == table2["retrieved"]  # the same retrieved collections as Table 2


def test_fig9_is_5_shot_original_and_retrieved():
    src = _by_kind(_cfg("fig9"))
    assert set(src) == {"original", "retrieved"} and all(s.shots == (5,) for s in src.values())
    assert {"cler", "linear_probe"} <= set(_cfg("fig9").metrics)


@pytest.mark.parametrize("name,clip", [("fig11-rn50", "RN50:openai"), ("fig11-vit-b-32", "ViT-B-32:openai"),
                                       ("fig11-vit-b-16", "ViT-B-16:openai"), ("fig11-vit-l-14", "ViT-L-14:openai")])
def test_fig11_one_config_per_backbone_over_the_same_generated_data(name, clip):
    cfg = _cfg(name)
    assert cfg.clip == clip and cfg.datasets == CORRELATION_DATASETS
    gen = _by_kind(cfg)["generated"]
    assert gen == _by_kind(_cfg("fig11-vit-b-32"))["generated"] and gen.shots == (5,) and gen.generator == SD21
    assert {"cler", "linear_probe"} <= set(cfg.metrics)


def test_the_report_names_configs_that_exist():
    import glob

    from genbench.report.paper import CONFIGS

    root = PAPER.parent.parent
    for part, pattern in CONFIGS.items():
        assert glob.glob(str(root / pattern)), (part, pattern)
