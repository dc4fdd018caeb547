"""``s3://`` output end to end against a real S3-compatible server (moto's server mode) on 127.0.0.1.

`genbench run` runs as a subprocess, so its embedded Ray workers inherit the credentials from the environment; the
config names only the endpoint. Everything is read back through s3fs and through webdataset's fsspec URLs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import fsspec
import pytest
import webdataset as wds
import yaml

from genbench.catalog import get_dataset

BIN = os.path.dirname(sys.executable)
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(monkeypatch):
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import requests

        # moto keeps its buckets in this process across servers: start every test from an empty store.
        requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
        fs = fsspec.filesystem("s3", endpoint_url=endpoint, skip_instance_cache=True)
        fs.mkdir("genbench-test")
        yield endpoint
    finally:
        server.stop()


def _objects(fs) -> dict[str, str]:
    """key -> ETag of every object under the run (an overwrite would change nothing but LastModified, so use both)."""
    return {k: (v["ETag"], str(v["LastModified"])) for k, v in fs.find("genbench-test/run", detail=True).items()}


def test_s3_output_end_to_end(s3_server, tmp_path):
    config = {
        "name": "s3", "datasets": ["digits"], "clip": "tiny", "seed": 0, "shard_size": 10,
        "storage_options": {"endpoint_url": s3_server},
        "sources": [{"source": "generated", "generator": "null", "strategies": ["st"], "shots": [1, 3], "resolution": 32}],
        "engine": {"workers": 1},  # one actor per run: the point is the bucket, not the pool
    }
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, **CREDS, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_ADDRESS": ""}
    cmd = [os.path.join(BIN, "genbench"), "--no-progress", "run", str(path), "--out", "s3://genbench-test/run"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280, start_new_session=True)
    assert first.returncode == 0, first.stderr[-3000:]

    fs = fsspec.filesystem("s3", endpoint_url=s3_server, skip_instance_cache=True)
    results = json.loads(fs.cat_file("genbench-test/run/results.json"))
    assert sorted(r["shots"] for r in results) == [1, 3]
    assert {r["n_train"] for r in results} == {10, 30}
    coll = "genbench-test/run/shards/digits/generated/null_st_res32_s0"
    assert all(r["collection"] == "s3://" + coll for r in results)
    manifest = json.loads(fs.cat_file(f"{coll}/manifest.json"))
    wids = json.loads(fs.cat_file(f"{coll}/index.wids.json"))
    assert manifest["complete"] is True and manifest["samples"] == 30
    assert [s["url"] for s in wids["shardlist"]] == ["000000.tar", "000001.tar", "000002.tar"]
    for shard in manifest["shards"]:  # what the manifest promises is what the bucket holds
        assert fs.size(f"{coll}/{shard['tar']}") == shard["bytes"]
        assert fs.exists(f"{coll}/emb/tiny/{shard['tar'].replace('.tar', '.parquet')}")
    assert not [k for k in fs.find("genbench-test") if k.endswith(".tmp")]

    # webdataset streams the shards from the bucket the usual way: a pipe: URL whose command writes the object to
    # stdout (here s3fs with the test endpoint; credentials from the environment).
    cat = "import fsspec, sys; sys.stdout.buffer.write(fsspec.open(sys.argv[1], 'rb', endpoint_url=sys.argv[2]).open().read())"
    urls = [f'pipe:{sys.executable} -c "{cat}" s3://{coll}/{s["url"]} {s3_server}' for s in wids["shardlist"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    classes = get_dataset("digits").classes
    assert sorted(s["__key__"] for s in samples) == sorted(f"c{c:04d}-k{k:06d}" for c in range(10) for k in range(3))
    for s in samples:
        meta = json.loads(s["json"])
        assert int(s["cls"]) == meta["cls"] and meta["class_name"] == classes[meta["cls"]]
        assert s["__key__"] == f"c{meta['cls']:04d}-k{meta['shot']:06d}"

    before = _objects(fs)
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280, start_new_session=True)
    assert again.returncode == 0, again.stderr[-3000:]
    fs.invalidate_cache()
    after = _objects(fs)
    # Shards, sidecars and stats records are untouched; only the run's summaries are rewritten.
    rewritten = {k for k in after if after[k] != before.get(k)}
    assert all(k.rsplit("/", 1)[1] in ("results.json", "report.md", "manifest.json", "index.wids.json")
               for k in rewritten), rewritten
    assert set(after) == set(before)
    # The same records, but for the evaluation seconds measured anew (paper Fig. 5).
    def untimed(recs: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "eval_seconds"} for r in recs]

    assert untimed(json.loads(fs.cat_file("genbench-test/run/results.json"))) == untimed(results)


def test_storage_options_reach_the_index_and_score_and_embed(s3_server, tmp_path):
    """An index built into the bucket and opened from it, and `genbench score`/`embed` of a collection in the bucket,
    all with the endpoint given as a storage option (no AWS default could reach it)."""
    import shutil

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genbench.cli import main
    from genbench.models.build import built_clip_dir
    from genbench.retrieval.index import open_index

    opt = ["--storage-option", f"endpoint_url={s3_server}"]
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 64)).astype(np.float32)
    pq.write_table(pa.table({"url": [f"http://x/{i}.jpg" for i in range(50)], "caption": [f"c{i}" for i in range(50)],
                             "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), 64)}),
                   tmp_path / "captions.parquet")
    assert main(["index", "build", "--captions", str(tmp_path / "captions.parquet"), "--clip", "tiny",
                 "--out", "s3://genbench-test/idx", "--embedding-column", "emb", *opt]) == 0
    index = open_index("s3://genbench-test/idx", storage_options={"endpoint_url": s3_server})
    sims, ids = index.search(emb[7:8] / np.linalg.norm(emb[7]), 1)
    assert int(ids[0, 0]) == 7 and sims[0, 0] > 0.999

    fs = fsspec.filesystem("s3", endpoint_url=s3_server, skip_instance_cache=True)
    legacy = os.path.join(os.path.dirname(__file__), "fixtures", "legacy_v1", "shards", "digits", "original", "kshot_s0")
    fs.put(legacy, "genbench-test/kshot", recursive=True)
    other = tmp_path / "clip-b"  # the tiny CLIP under another name: its sidecars are missing from the bucket
    shutil.copytree(built_clip_dir("tiny-clip"), other)
    dest = tmp_path / "score.json"
    assert main(["score", "--train", "s3://genbench-test/kshot", "--dataset", "digits", "--clip", str(other),
                 "--json", str(dest), *opt]) == 0
    assert json.loads(dest.read_text())[0]["n_train"] == 20  # a list of records, as results.json
    fs.invalidate_cache()
    assert fs.exists("genbench-test/kshot/emb/clip-b/000000.parquet")
    assert json.loads(fs.cat_file("genbench-test/kshot/manifest.json"))["shards"][0]["embeddings"] == ["clip-b", "tiny"]
    assert main(["embed", "--collection", "s3://genbench-test/kshot", "--clip", "tiny", *opt]) == 0
