"""The generator sweep's report view ranks generators by CLER gain over zero-shot and by USD per point of gain."""

from __future__ import annotations

from genbench.report.document import Bullets, to_markdown
from genbench.report.select import gen_slug
from genbench.report.sweep import sweep_blocks
from genbench.report.table2 import GroupedTable

GAINS = {  # (dataset, generator) -> CLER gain at 20 shots; 100 shots add 1 point
    ("cifar10", "sd21-base"): 2.0, ("cifar10", "sdxl"): 4.0, ("cifar10", "flux1-schnell"): -1.0,
    ("oxford_pets", "sd21-base"): 3.0, ("oxford_pets", "sdxl"): 1.0, ("oxford_pets", "flux1-schnell"): 5.0,
    ("caltech101", "sd21-base"): 5.0, ("caltech101", "sdxl"): 2.0, ("caltech101", "flux1-schnell"): 3.0,
    ("eurosat", "sd21-base"): 1.0, ("eurosat", "sdxl"): 0.5,
}
HUB = {"sd21-base": "stabilityai/stable-diffusion-2-1-base", "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
       "flux1-schnell": "black-forest-labs/FLUX.1-schnell"}
USD = {"sd21-base": 1e-4, "sdxl": 4e-4, "flux1-schnell": 2e-4}
ORDER = ("flux1-schnell", "sd21-base", "sdxl")  # the columns: generators by their slugs' order


def _records() -> list[dict]:
    out = []
    for (dataset, gen), g in GAINS.items():
        for shots in (20, 100):
            out.append({"dataset": dataset, "source": "generated", "generator": HUB[gen], "strategy": "dt",
                        "shots": shots, "clip": "ViT-B-32:openai", "n_train": shots * 10,
                        "scores": {"zeroshot": 50.0, "cler": 50.0 + g + (shots == 100)},
                        "cost": {"usd_per_image": USD[gen]}, "collection": f"{dataset}/{gen}"})
    # Another strategy and a retrieved source are not part of the sweep.
    out.append({**out[0], "strategy": "st", "scores": {"zeroshot": 50.0, "cler": 99.0}})
    out.append({**out[0], "source": "retrieved", "generator": None, "strategy": None})
    return out


def test_sweep_ranks_generators_per_dataset_and_group_and_prices_a_point_of_gain():
    blocks = sweep_blocks(_records())
    gains, prices = [b for b in blocks if isinstance(b, GroupedTable)]
    assert [c for c, _ in gains.groups[0][1]] == sorted(gen_slug(HUB[g]) for g in ORDER)
    assert [c for c, _ in gains.groups[0][1]] == [gen_slug(HUB[g]) for g in ORDER]
    rows = dict(gains.rows)
    assert list(rows) == ["caltech101", "cifar10", "oxford_pets", "eurosat", "mean: common", "mean: fine-grained",
                          "mean: rare", "mean: all"]  # datasets by concept group, then the group means
    # cifar10 at 20 shots: sdxl best, sd21-base second; at 100 shots one point more each.
    assert [c.value for c in rows["cifar10"]] == [-1.0, 2.0, 4.0, 0.0, 3.0, 5.0]
    assert [c.mark for c in rows["cifar10"][:3]] == [None, "second", "best"]
    # eurosat has no FLUX record: '-' there; a mean over fewer datasets than the group has is marked partial.
    assert rows["eurosat"][0].value is None and rows["mean: rare"][0].value is None
    assert [c.value for c in rows["mean: common"][:3]] == [1.0, 3.5, 3.0]
    assert rows["mean: all"][0].value == 7.0 / 3 and rows["mean: all"][0].partial
    assert not rows["mean: all"][1].partial
    # USD per point: sd21-base on cifar10 at 20 shots = 1e-4 USD x 200 images / 2 points; lower is better.
    prow = dict(prices.rows)
    assert abs(prow["cifar10"][1].value - 1e-4 * 200 / 2.0) < 1e-12
    assert prow["cifar10"][0].value is None  # no gain: no price per point
    assert [c.mark for c in prow["caltech101"][:3]] == ["second", "best", None]  # 0.0133, 0.004, 0.04
    ranking = next(b for b in blocks if isinstance(b, Bullets)).items
    sd, xl, fx = (gen_slug(HUB[g]) for g in ("sd21-base", "sdxl", "flux1-schnell"))
    assert f"20 shots, common: {sd} (+3.50) > {xl} (+3.00) > {fx} (+1.00)" in ranking
    assert f"100 shots, rare: {sd} (+2.00) > {xl} (+1.50)" in ranking
    text = to_markdown(blocks)
    assert "Generator sweep" in text and "USD per point of CLER gain" in text


def test_one_generator_draws_no_sweep():
    recs = [r for r in _records() if r.get("generator") == HUB["sdxl"]]
    assert sweep_blocks(recs) == []
