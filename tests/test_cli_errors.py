"""Bad input: exit code 2, one line naming the field, the bad value and what is allowed, and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from genbench.cli import main

GOOD = {
    "name": "bad-input",
    "datasets": ["digits"],
    "clip": "tiny",
    "shard_size": 10,
    "sources": [{"source": "original", "shots": 1}],
}


def _write(tmp_path, data) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def _expect_usage_error(capsys, argv, *needles, out_dir=None):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    if out_dir is not None:
        assert not os.path.exists(out_dir) or os.listdir(out_dir) == [], "nothing may be written on bad input"
    return lines[0]


def _with(**changes):
    cfg = {**GOOD, **changes}
    return cfg


def _with_source(**changes):
    return {**GOOD, "sources": [{**GOOD["sources"][0], **changes}]}


@pytest.mark.parametrize(
    "cfg,needles",
    [
        (_with(datasets=["imagenet-22k"]), ("datasets[0]", "imagenet-22k", "imagenet_1k", "genbench datasets")),
        (_with_source(source="scraped"), ("sources[0].source", "scraped", "generated")),
        (_with_source(shots=0), ("sources[0].shots", "0", ">= 1")),
        (_with_source(shots=-5), ("sources[0].shots", "-5")),
        (_with(sources=[{"source": "generated", "generator": "tiny", "strategies": ["xx"], "shots": 1}]),
         ("sources[0].strategies[0]", "xx", "st")),
        (_with(colour="blue"), ("colour", "blue", "known keys")),
        (_with_source(steps_typo=3), ("sources[0].steps_typo", "keys of an original source")),
        (_with(clip="NoSuchArch:openai"), ("clip", "NoSuchArch:openai")),
        (_with(metrics=["cler", "fid"]), ("metrics", "fid", "inception_weights")),
        (_with(inception_weights="/nope/inception.safetensors"), ("inception_weights", "/nope/inception.safetensors")),
        (_with_source(source="generated", generator="tiny", tig_strength=0), ("sources[0].tig_strength", "(0, 1]")),
        (_with_source(source="retrieved", index="/x", allow_addresses="localhost"), ("allow_addresses[0]", "CIDR")),
        (_with(engine={"cpus_per_worker": 0}), ("engine.cpus_per_worker", "(0, 1024]")),
        (_with(sources=[{"source": "original", "shots": 1}, {"source": "original", "shots": 2}]),
         ("sources[1]", "one list")),
        (_with(sources=[{"source": "generated", "generator": "no-such-org/no-such-model", "shots": 1}]),
         ("sources[0].generator", "no-such-org/no-such-model")),
        (_with(sources=[{"source": "generated", "generator": "/does/not/exist", "shots": 1}]),
         ("generator", "/does/not/exist")),
        (_with(sources=[{"source": "generated", "generator": "random:xyz", "shots": 1}]),
         ("sources[0].generator", "random:xyz", "random:sd21-base")),
        (_with_source(steps=3), ("sources[0].steps", "generated source")),
        (_with_source(source="retrieved", index="/x", fetch={"timeout_s": -1}), ("sources[0].fetch.timeout_s", "-1")),
        (_with(metrics=["fid"], inception_weights=None), ("metrics", "fid", "inception_weights")),
    ],
)
def test_bad_config_values(tmp_path, capsys, cfg, needles):
    out = str(tmp_path / "out")
    _expect_usage_error(capsys, ["run", _write(tmp_path, cfg), "--out", out], *needles, out_dir=out)


def test_score_fid_without_inception_weights(tmp_path, capsys):
    """`genbench score --metrics fid` needs Inception weights: refused up front, not run and silently left out."""
    import shutil

    coll = tmp_path / "kshot"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "fixtures", "legacy_v1", "shards", "digits", "original",
                                 "kshot_s0"), coll)
    dest = tmp_path / "score.json"
    _expect_usage_error(capsys, ["score", "--train", str(coll), "--dataset", "digits", "--clip", "tiny", "--json",
                                 str(dest), "--metrics", "cler", "fid"], "--inception-weights", "fid")
    _expect_usage_error(capsys, ["score", "--train", str(coll), "--dataset", "digits", "--clip", "tiny", "--json",
                                 str(dest), "--metrics", "fid", "--inception-weights", str(tmp_path / "none.safetensors")],
                        "--inception-weights", "none.safetensors")
    assert not dest.exists()


def test_a_secret_in_storage_options_is_refused_and_never_shown(tmp_path, capsys):
    out = str(tmp_path / "out")
    cfg = _with(storage_options={"endpoint_url": "http://127.0.0.1:9", "client_kwargs": {"AWS_Secret_Access_Key": "S3CR3T"}})
    line = _expect_usage_error(capsys, ["run", _write(tmp_path, cfg), "--out", out],
                               "storage_options.client_kwargs.AWS_Secret_Access_Key", "<hidden>", out_dir=out)
    assert "S3CR3T" not in line


def test_two_generators_whose_directories_share_a_name_are_told_apart_or_refused_clearly(tmp_path, capsys):
    for parent in ("run1", "run2"):
        (tmp_path / parent / "final").mkdir(parents=True)
        (tmp_path / parent / "final" / "model_index.json").write_text("{}")
    cfg = _with(sources=[{"source": "generated", "generator": str(tmp_path / p / "final"), "shots": 1} for p in ("run1", "run2")])
    out = str(tmp_path / "out")
    _expect_usage_error(capsys, ["run", _write(tmp_path, cfg), "--out", out], "sources[1]", "differs from sources[0] in "
                        "generator", "final_st_s0", out_dir=out)


def test_missing_config_file(tmp_path, capsys):
    _expect_usage_error(capsys, ["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")], "config", "nope.yaml",
                        out_dir=str(tmp_path / "o"))


def test_malformed_config_file(tmp_path, capsys):
    path = _write(tmp_path, "name: x\ndatasets: [digits\nsources: {")
    _expect_usage_error(capsys, ["run", path, "--out", str(tmp_path / "o")], "config", "valid YAML", out_dir=str(tmp_path / "o"))


def test_config_not_a_mapping(tmp_path, capsys):
    _expect_usage_error(capsys, ["run", _write(tmp_path, "- just\n- a list\n")], "config", "mapping")


def test_output_directory_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("precious")
    _expect_usage_error(capsys, ["run", _write(tmp_path, GOOD), "--out", str(out)], "out", "file")
    assert out.read_text() == "precious"


def test_cli_argument_errors(tmp_path, capsys):
    out = str(tmp_path / "gen")
    _expect_usage_error(capsys, ["generate", "--dataset", "digits", "--generator", "tiny", "--shots", "0", "--out", out],
                        "--shots", "0", ">= 1", out_dir=out)
    _expect_usage_error(capsys, ["generate", "--dataset", "nope", "--generator", "tiny", "--shots", "2", "--out", out],
                        "dataset", "nope", out_dir=out)
    _expect_usage_error(capsys, ["generate", "--dataset", "digits", "--generator", "tiny", "--strategy", "zz", "--shots", "2",
                                 "--out", out, "--clip", "tiny"], "strategies", "zz", out_dir=out)
    _expect_usage_error(capsys, ["original", "--dataset", "digits", "--shots", "-1", "--out", out], "--shots", out_dir=out)
    _expect_usage_error(capsys, ["frobnicate"], "frobnicate")


def test_console_script_exit_code(tmp_path):
    """The installed `genbench` command, as a user runs it: exit 2 and one line on stderr."""
    exe = os.path.join(os.path.dirname(sys.executable), "genbench")
    proc = subprocess.run([exe, "run", str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing.yaml" in proc.stderr
