"""The shipped generator sweep (configs/generator-sweep.yaml) end to end on tiny random builds of every family: the
same sources with each hub id replaced by its family's tiny build, run through the engine, then the report's sweep
section ranks them. Tiny random models prove the plumbing, not which generator is better."""

from __future__ import annotations

import os

import yaml

from genbench.config import parse_config
from genbench.engine.experiment import run_experiment
from genbench.models.families import family_names, family_of
from genbench.report.build import build_report
from genbench.report.select import gen_slug

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_generator_sweep_runs_on_tiny_builds_and_its_report_ranks_every_family(ray_local, tmp_path):
    with open(os.path.join(REPO, "configs", "generator-sweep.yaml"), encoding="utf-8") as f:
        data = yaml.safe_load(f)
    tiny = []
    for src in data["sources"]:
        family = family_of(src["generator"])
        assert family is not None, src["generator"]
        # 2 steps instead of each family's default: the tiny builds' images are noise either way.
        tiny.append({**src, "generator": f"tiny:{family.name}", "shots": [1], "steps": 2, "batch_size": 10})
    assert sorted(family_of(s["generator"]).name for s in tiny) == sorted(family_names())
    cfg = parse_config({**data, "datasets": ["digits"], "clip": "tiny", "shard_size": 10, "sources": tiny,
                        "out": str(tmp_path / "run")})
    records = run_experiment(cfg, str(tmp_path / "run"), workers=1, progress=False)
    assert len(records) == len(tiny) and all(r["n_train"] == 10 for r in records)
    # Each collection carries its family's defaults: the distilled ones sampled without classifier-free guidance.
    by_family = {family_of(r["generator"]).name: r for r in records}
    for name in ("sdxl-turbo", "sd35-large-turbo", "flux1-schnell"):
        assert "_cfg0_" in by_family[name]["variant"], by_family[name]["variant"]
    assert "_seq512_" in by_family["flux1-dev"]["variant"] and "_cfg3.5_" in by_family["flux1-dev"]["variant"]

    report = build_report([str(tmp_path / "run")], str(tmp_path / "report"))
    with open(report["report_md"], encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Generator sweep"):]
    for r in records:
        assert gen_slug(r["generator"]) in section
    assert "USD per point of CLER gain" in section and "Ranking by mean CLER gain per concept group" in section
