"""CLIP fine-tuning as a score, on the toy world: fine-tuning the toy CLIP on a 32-shot original digits collection
(written by `genbench original`) beats its zero-shot score on the digits test split; the epoch is chosen without the
test split (replaced by garbage, the choice stays the same, and it is opened only after the choice); settings out of
range exit 2; `genbench finetune` writes its record through a Ray task, real k-shot images mixed in."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from genbench.catalog.loaders.base import SplitData
from genbench.cli import main
from genbench.errors import UsageError
from genbench.finetune import FinetuneSettings

SHOTS = 32
# The toy CLIP is small and was trained from scratch here, so it wants a larger step than a pretrained CLIP's default;
# one thread: on a shared 2-core machine two OpenMP threads can run 50x slower than one.
SETTINGS = FinetuneSettings(lr=1e-3, epochs=4, threads=1)


@pytest.fixture(scope="module")
def collection(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft-collections")
    assert main(["--no-progress", "original", "--dataset", "digits", "--shots", str(SHOTS), "--out", str(out),
                 "--clip", "none", "--shard-size", "128", "--workers", "1"]) == 0
    return str(out / "digits" / "original" / "kshot_s0")


@pytest.fixture(scope="module")
def honest(collection):
    from genbench.engine.finetune import finetune_collection

    return finetune_collection(collection, "toy", SETTINGS)


def test_finetuned_toy_clip_beats_its_zero_shot_on_the_digits_test_split(honest):
    assert honest["dataset"] == "digits" and honest["metric"] == "accuracy" and honest["n_test"] == 540
    assert honest["n_collection"] == 10 * SHOTS and honest["n_train"] + honest["n_val"] == 10 * SHOTS
    assert honest["scores"]["finetune"] > honest["scores"]["zeroshot"] > 80.0
    assert 1 <= honest["chosen_epoch"] <= SETTINGS.epochs
    assert [e["epoch"] for e in honest["validation"]] == list(range(SETTINGS.epochs + 1))
    chosen = honest["validation"][honest["chosen_epoch"]]
    assert chosen["val_score"] == max(e["val_score"] for e in honest["validation"][1:])
    assert honest["toy_models"] == ["toy-clip"] and "toy models" in honest["notice"]


class _Garbage(SplitData):
    """A 'test split' of noise: random pixels, shuffled labels, the real split's size (so the size check passes)."""

    def __init__(self, n: int, num_classes: int):
        rng = np.random.default_rng(7)
        self.dataset, self.split = "digits", "test"
        self._labels = rng.integers(0, num_classes, n).astype(np.int64)
        self._pixels = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def image(self, i: int) -> Image.Image:
        return Image.fromarray(self._pixels[i])


def test_model_selection_never_reads_the_test_split(collection, honest, monkeypatch):
    import genbench.catalog.loaders as loaders
    import genbench.finetune.train as train
    from genbench.engine.finetune import finetune_collection

    events: list[str] = []
    real_load, real_select = loaders.load_split, train.select

    def load_split(spec, split, data_root=None):
        events.append(f"open {split}")
        return _Garbage(spec.test_size, spec.num_classes) if split == "test" else real_load(spec, split, data_root)

    def select(*args, **kwargs):
        events.append("select begins")
        try:
            return real_select(*args, **kwargs)
        finally:
            events.append("select ends")

    monkeypatch.setattr(loaders, "load_split", load_split)
    monkeypatch.setattr(train, "select", select)
    garbage = finetune_collection(collection, "toy", SETTINGS)
    # The test split is opened once, after the selection ended.
    assert events == ["select begins", "select ends", "open test"]
    # The same choice and the same validation curve to the bit as with the real test split in place ...
    assert garbage["chosen_epoch"] == honest["chosen_epoch"]
    assert garbage["validation"] == honest["validation"]
    # ... while the scorer, afterwards, really read the noise: near chance, where the real test split gives > 80%.
    assert garbage["scores"]["finetune"] < 30.0 < 80.0 < honest["scores"]["finetune"]


@pytest.mark.parametrize("field,value", [("rank", 0), ("rank", 257), ("lr", 0.0), ("lr", 2.0), ("lr", float("nan")),
                                         ("epochs", 0), ("epochs", 1001), ("steps_per_epoch", 0),
                                         ("val_fraction", 0.6), ("mode", "half"), ("batch_size", True)])
def test_settings_out_of_range_name_the_field(field, value):
    with pytest.raises(UsageError, match=rf"^finetune\.{field}: got "):
        FinetuneSettings(**{field: value})


@pytest.mark.parametrize("args,field", [(["--rank", "0"], "finetune.rank"), (["--lr", "5"], "finetune.lr"),
                                        (["--epochs", "0"], "finetune.epochs"),
                                        (["--steps-per-epoch", "-3"], "finetune.steps_per_epoch")])
def test_cli_exits_2_on_settings_out_of_range(tmp_path, capsys, args, field):
    assert main(["finetune", "--collection", str(tmp_path), "--out", str(tmp_path / "r.json"), *args]) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_cli_finetune_writes_its_record_through_a_ray_task(collection, tmp_path, capsys):
    out = tmp_path / "ft.json"
    assert main(["--no-progress", "finetune", "--collection", collection, "--clip", "toy", "--epochs", "2",
                 "--lr", "1e-3", "--shots", "16", "--mix-original", "2", "--num-cpus", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["finetune"] == record["scores"]["finetune"] and printed["chosen_epoch"] == record["chosen_epoch"]
    assert record["kind"] == "genbench-finetune" and record["shots"] == 16
    assert record["n_collection"] == 160 and record["n_original"] == 20  # the real k-shot images mixed in
    assert record["settings"]["lr"] == 1e-3 and record["settings"]["mode"] == "lora"
    assert len(record["validation"]) == 3 and record["n_test"] == 540


def test_a_run_with_a_finetune_block_scores_each_collection_and_the_report_draws_fig10(ray_local, tmp_path):
    """A config's `finetune:` block: after the worker pool is gone, one Ray task per collection prefix it names;
    each record carries scores.finetune and how it was chosen, and the report draws Fig. 10 from them."""
    from genbench.config import parse_config
    from genbench.engine.experiment import run_experiment
    from genbench.report.build import build_report

    cfg = parse_config({"name": "ft-run", "datasets": ["digits"], "clip": "toy", "shard_size": 80,
                        "sources": [{"source": "original", "shots": [4, 8]}], "metrics": ["zeroshot", "cler"],
                        "finetune": {"shots": [8], "lr": 1e-3, "epochs": 2}, "engine": {"workers": 1}})
    records = run_experiment(cfg, str(tmp_path / "out"), progress=False)
    by_shots = {r["shots"]: r for r in records}
    assert "finetune" not in by_shots[4]["scores"]  # only the shot counts the block names
    tuned = by_shots[8]
    assert 50.0 < tuned["scores"]["finetune"] <= 100.0 and 1 <= tuned["finetune"]["chosen_epoch"] <= 2
    assert json.load(open(tmp_path / "out" / "results.json"))[1]["scores"]["finetune"] == tuned["scores"]["finetune"]
    res = build_report([str(tmp_path / "out")], str(tmp_path / "report"))
    assert any(p["kind"] == "fig10" for p in res["plots"])
    with pytest.raises(UsageError, match=r"finetune\.sources\[0\]"):
        parse_config({"name": "x", "datasets": ["digits"], "sources": [{"source": "original", "shots": 2}],
                      "finetune": {"sources": ["synthetic"]}})
    with pytest.raises(UsageError, match=r"finetune\.rank"):
        parse_config({"name": "x", "datasets": ["digits"], "sources": [{"source": "original", "shots": 2}],
                      "finetune": {"rank": 0}})
