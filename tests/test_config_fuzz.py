"""Config values of the wrong type, out of bounds, NaN, infinite, huge or hostile: every one is exit 2 with one line
under 300 characters naming the field, and nothing is written. The cases are a fixed table crossed with a seeded
sample of hostile values, so a failure reproduces."""

from __future__ import annotations

import copy
import math
import os
import random

import pytest
import yaml

from genbench.cli import main

GOOD = {"name": "fuzz", "datasets": ["digits"], "clip": "tiny", "shard_size": 10,
        "sources": [{"source": "original", "shots": 1}]}
GEN = {"source": "generated", "generator": "tiny", "shots": 1}
RET = {"source": "retrieved", "index": "/nonexistent/index", "shots": 1}

# (where, bad values): "sources[0].x" sets key x on the base source; a leading "gen:" or "ret:" uses that source.
TABLE = [
    ("name", [123, "", "../escape", "a/b", "x" * 500, None, ["l"], "a\x00b", ".hidden"]),
    ("datasets", [5, [], ["nope"], {"a": 1}, [1], "x" * 10_000]),
    ("clip", [5, "", "x" * 5000, "NoSuchArch:openai", {"a": 1}, "tiny\x00"]),
    ("seed", [-1, 1.5, "0", True, 2**40, math.nan]),
    ("shard_size", [0, -3, 10**9, "10", None, math.inf]),
    ("metrics", ["nope", [], ["cler", 3], 5, [None]]),
    ("storage_options", [5, "x", {"secret": "s"}, {"a": [1]}, {"client_kwargs": {"Password": "p"}}]),
    ("engine", [5, {"workers": 0}, {"workers": 10**6}, {"max_in_flight": "2"}, {"gpus_per_worker": math.inf},
                {"verify": "md5"}, {"lock_wait_s": -1}, {"on_locked": "maybe"}, {"nope": 1}]),
    ("pricing", [{"usd_per_hour": math.nan}, {"usd_per_hour": -1}, {"gpus_per_instance": 0}, {"instance": ""}, 5]),
    ("inception_weights", [5, "/no/such.safetensors", "relative.pt"]),
    ("accept_test_subset", ["yes", 1, None]),
    ("sources", [5, [], [5], [None], "original"]),
    ("sources[0].shots", [10**12, math.inf, [], "3", [0], -1, [1] * 2000]),
    ("sources[0].source", [5, None, "scraped", "x:y:z", "os:system"]),
    ("sources[0].image_format", ["gif", 5]),
    ("sources[0].jpeg_quality", [101, 0, 9.5]),
    ("gen:steps", [1e8, 0, 10**6, "25"]),
    ("gen:image_size", [100000, 4, "32"]),
    ("gen:resolution", [12, 10**6]),
    ("gen:guidance_scale", [math.nan, math.inf, -1, "7"]),
    ("gen:batch_size", [0, 10**6, True]),
    ("gen:strategies", [5, [], ["zz"], "x" * 300]),
    ("gen:per_dataset", [{"cifar10": ["st"]}, 5, {"digits": ["zz"]}]),
    ("gen:generator", [5, "", "random:xyz", "no such/thing", "/does/not/exist"]),
    ("gen:compile", ["yes", 1]),
    ("gen:tig_strength", [0, 1.5, math.nan]),
    ("ret:allow_addresses", [5, ["x"], "localhost", [1]]),
    ("ret:fetch", [5, {"timeout_s": math.inf}, {"retries": -1}, {"max_bytes": 10**12}, {"nope": 1}]),
    ("ret:oversample", [0.5, math.inf]),
]


def _case(where: str, value) -> dict:
    cfg = copy.deepcopy(GOOD)
    if ":" in where.split(".")[0]:
        kind, key = where.split(":", 1)
        cfg["sources"] = [{**(GEN if kind == "gen" else RET), key: value}]
    elif where.startswith("sources[0]."):
        cfg["sources"][0][where.split(".", 1)[1]] = value
    else:
        cfg[where] = value
    return cfg


def _cases() -> list[tuple[str, object]]:
    out = [(w, v) for w, values in TABLE for v in values]
    # Two bad fields at once, drawn with a fixed seed: the error names one of them and still nothing is written.
    rng = random.Random(0)
    for _ in range(12):
        (w1, v1s), (w2, v2s) = rng.sample([t for t in TABLE if ":" not in t[0] and "sources" not in t[0]], 2)
        out.append((f"{w1}+{w2}", (w1, rng.choice(v1s), w2, rng.choice(v2s))))
    return out


CASES = _cases()


@pytest.mark.parametrize("where,value", CASES, ids=[f"{w}-{i}" for i, (w, _) in enumerate(CASES)])
def test_bad_value_is_one_short_line_and_nothing_written(tmp_path, capsys, where, value):
    if "+" in where:
        w1, v1, w2, v2 = value
        cfg = _case(w1, v1)
        cfg[w2] = v2
        fields = (w1, w2)
    else:
        cfg, fields = _case(where, value), (where,)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 300, err
    names = [f.split(":", 1)[-1].split(".")[-1] for f in fields] + ["source", "index", "config"]
    assert any(n in err for n in names), err
    assert not out.exists() or not os.listdir(out)


def test_yaml_aliases_are_refused(tmp_path, capsys):
    """A few hundred bytes of nested aliases would expand into gigabytes: refused at the first alias."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nname: fuzz\ndatasets: [digits]\nsources: [{source: original, shots: 1}]\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err) < 300 and "aliases" in err and not (tmp_path / "out").exists()


def test_an_output_that_cannot_be_written_is_refused_before_ray_starts(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert main(["run", str(path), "--out", "/proc/genbench-out"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "out" in err and "/proc/genbench-out" in err
