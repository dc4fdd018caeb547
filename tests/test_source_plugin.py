"""A new kind of data is one module: a Source defined in a test module, named in a config, run end to end through
`genbench run` on the embedded Ray cluster, with no change to the library."""

from __future__ import annotations

import json
import os

import numpy as np
import webdataset as wds
import yaml

from genbench.cli import main
from tests.helpers import tars
from tests.solid_source import colour


def _config(tmp_path, source: str, **extra) -> str:
    cfg = {"name": "solid", "datasets": ["digits"], "clip": "tiny", "shard_size": 15, "engine": {"workers": 2},
           "metrics": ["zeroshot", "cler", "cler_text", "linear_probe", "fd_clip", "clip_score"],
           "sources": [{"source": source, "shots": [1, 3], **extra}]}
    path = tmp_path / "solid.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_a_source_from_a_test_module_runs_through_genbench_run(ray_local, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--no-progress", "run", _config(tmp_path, "tests.solid_source:SolidSource", size=12),
                 "--out", str(out)]) == 0
    records = json.loads((out / "results.json").read_text())
    assert [(r["source"], r["shots"], r["n_train"], r["variant"]) for r in records] == [
        ("solid", 1, 10, "solid_px12_s0"), ("solid", 3, 30, "solid_px12_s0")]
    for r in records:
        assert set(r["scores"]) == {"zeroshot", "cler", "cler_text", "linear_probe", "fd_clip"}  # no prompts: no CLIP score
    coll = out / "shards" / "digits" / "solid" / "solid_px12_s0"
    samples = list(wds.WebDataset(tars(str(coll)), shardshuffle=False, empty_check=False).decode("rgb8"))
    assert len(samples) == 30
    for s in samples:
        cls = int(s["cls"])
        assert s["png"].shape == (12, 12, 3) and (s["png"] == np.array(colour(cls), dtype=np.uint8)).all()
    man = json.loads((coll / "manifest.json").read_text())
    assert man["spec"]["source_ref"] == "tests.solid_source:SolidSource" and man["spec"]["options"] == {"size": 12}
    # The shards were made by Ray worker processes, which imported the test module themselves.
    pids = {json.loads((coll / "stats" / n).read_text())["pid"] for n in os.listdir(coll / "stats")}
    assert os.getpid() not in pids


def test_a_source_reference_that_does_not_import_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", _config(tmp_path, "tests.no_such_module:Source"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sources[0].source" in err and "tests.no_such_module:Source" in err
    assert not out.exists()
    assert main(["run", _config(tmp_path, "tests.solid_source:SolidSource", colour="red"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "sources[0].colour" in err and "keys of a solid source" in err and not out.exists()


def test_a_kind_registered_as_an_entry_point_resolves_to_its_reference(tmp_path, monkeypatch):
    """An installed package can register a kind under the `genbench.sources` entry-point group; the driver resolves
    the name to the module:Class reference the workers import (they need no entry points of their own)."""
    from genbench.sources import registry

    dist = tmp_path / "solid_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: solid-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[genbench.sources]\nsolid = tests.solid_source:SolidSource\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "solid" in registry.known_kinds()
    assert registry.resolve("solid") == "tests.solid_source:SolidSource"
    assert registry.resolve("generated") == registry.BUILTIN["generated"]
    assert registry.load(registry.resolve("solid")).kind == "solid"
