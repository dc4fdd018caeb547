"""Typed source specs: defaults in one place, a key of another kind refused, identities that match what collections
have always recorded, and names that carry every image-changing option off its default (and never the same name for
two different values)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest

from genbench.config import parse_config
from genbench.errors import UsageError
from genbench.sources.base import CheckContext, ShardSamples
from genbench.sources.registry import load

# What genbench 7cdfb1c recorded in identity.json for collections made with default options (its options dicts).
LEGACY_GENERATED = {"batch_size": 8, "compile": False, "dtype": None, "generator": "tiny", "guidance_scale": 7.5,
                    "image_format": "jpg", "image_size": None, "jpeg_quality": 95, "resolution": None,
                    "scheduler": "dpmsolver++", "steps": 25, "strategy": "st"}
LEGACY_ORIGINAL = {"image_format": "png", "jpeg_quality": 95}


def _specs(*sources: dict) -> list:
    cfg = parse_config({"name": "s", "datasets": ["digits"], "clip": "tiny", "sources": list(sources)})
    return [(e.kind, s) for e in cfg.sources for s in e.spec.expand("digits")]


def test_defaults_give_the_legacy_identity_and_name():
    (_, dt), (gen_kind, gen), (orig_kind, orig) = _specs(
        {"source": "generated", "generator": "tiny", "shots": 1, "strategies": ["dt", "st"]},
        {"source": "original", "shots": 1})
    assert dt.identity_options() == {**LEGACY_GENERATED, "strategy": "dt"} and dt.variant(0) == "tiny_dt_s0"
    # ST's prompt became Table 6's (the class name alone): same name, but a collection made with the earlier prompt
    # ("a photo of a {}.") has another identity and is refused rather than extended.
    assert gen.identity_options() == {**LEGACY_GENERATED, "prompts": "table6"} and gen.variant(0) == "tiny_st_s0"
    assert orig.identity_options() == LEGACY_ORIGINAL and orig.variant(3) == "kshot_s3"


def test_a_collection_made_with_the_earlier_st_prompts_is_refused(tmp_path):
    from genbench.shards import manifest as mf
    from genbench.shards.store import Store

    (_, gen), = _specs({"source": "generated", "generator": "tiny", "shots": 1})
    store = Store(str(tmp_path))
    store.makedirs()
    old = {"dataset": "digits", "options": LEGACY_GENERATED}
    mf.check_identity(store, old)
    with pytest.raises(UsageError) as err:
        mf.check_identity(store, {"dataset": "digits", "options": gen.identity_options()})
    assert err.value.field == "out" and "options" in str(err.value)


def test_strategy_specific_options_join_identity_and_name_only_under_their_strategy():
    (_, ce), (_, st) = _specs({"source": "generated", "generator": "tiny", "shots": 1, "strategies": ["ce", "st"],
                               "ce_model": "tiny", "tig_strength": 0.5})
    assert ce.identity_options()["ce_model"] == "tiny" and "tig_strength" not in ce.identity_options()
    assert ce.variant(0) == "tiny_ce_ce-tiny_s0"
    assert "ce_model" not in st.identity_options() and st.variant(0) == "tiny_st_s0"


def test_every_image_changing_option_off_its_default_names_the_collection():
    ((_, spec),) = _specs({"source": "generated", "generator": "stabilityai/stable-diffusion-2-1-base", "shots": 1,
                           "strategies": ["np+rd"], "steps": 30, "guidance_scale": 7.0000001, "scheduler": "default",
                           "resolution": 512, "image_size": 224, "image_format": "png", "dtype": "bf16",
                           "compile": True})
    assert spec.variant(1) == ("sd21-base_np-rd_steps30_cfg7.0000001_res512_px224_png_bf16_sched-default_compiled_s1")
    ((_, spec),) = _specs({"source": "generated", "generator": "tiny", "shots": 1, "guidance_scale": 7.5, "steps": 25})
    assert spec.variant(0) == "tiny_st_s0"  # a default written out is still the default


def test_a_float_never_shares_a_name_with_a_nearby_one():
    names = {s.variant(0) for g in (3.0, 3.0000001, 3.25) for _, s in
             _specs({"source": "generated", "generator": "tiny", "shots": 1, "guidance_scale": g})}
    assert names == {"tiny_st_cfg3_s0", "tiny_st_cfg3.0000001_s0", "tiny_st_cfg3.25_s0"}


def test_a_key_of_another_kind_names_its_kind():
    with pytest.raises(UsageError) as err:
        _specs({"source": "original", "shots": 1, "steps": 3})
    assert err.value.field == "sources[0].steps" and "belongs to a generated source" in str(err.value)
    with pytest.raises(UsageError) as err:
        _specs({"source": "generated", "generator": "tiny", "shots": 1, "oversample": 2})
    assert "belongs to a retrieved source" in str(err.value)


def test_numbers_are_bounded_and_finite():
    for key, bad in (("steps", 10**8), ("image_size", 100000), ("guidance_scale", float("nan")),
                     ("guidance_scale", float("inf")), ("batch_size", True), ("shots", 10**12)):
        src = {"source": "generated", "generator": "tiny", "shots": 1, key: bad}
        with pytest.raises(UsageError) as err:
            _specs(src)
        assert err.value.field == f"sources[0].{key}"


def test_plugin_defaults_name_their_options():
    """A plugin option without a token is still named (by its field name); a flag that defaults to on says 'no-'."""
    from dataclasses import dataclass

    from genbench.sources.base import SourceSpec, option

    @dataclass(frozen=True, kw_only=True)
    class Spec(SourceSpec):
        strength: float = option(0.5)
        sharpen: bool = option(True)

        def base_name(self) -> str:
            return "edit"

    assert Spec(shots=(1,)).variant(0) == "edit_s0"
    assert Spec(shots=(1,), strength=0.7, sharpen=False).variant(0) == "edit_strength0.7_no-sharpen_s0"


def _index(tmp_path, with_id: bool) -> str:
    from genbench.retrieval.build import build_index_from_embeddings

    out = tmp_path / ("new" if with_id else "old") / "laion"
    emb = np.random.default_rng(0).normal(size=(20, 64)).astype(np.float32)
    meta = pa.table({"url": [f"http://x/{i}" for i in range(20)], "caption": [f"c{i}" for i in range(20)]})
    info = build_index_from_embeddings(emb, meta, str(out), clip_ref="tiny")
    if not with_id:  # as `genbench index build` wrote it before indexes kept an id
        raw = json.loads((out / "index.json").read_text())
        del raw["id"]
        (out / "index.json").write_text(json.dumps(raw))
    return str(out), info.id


def test_retrieved_collections_are_named_by_index_identity_and_old_indexes_keep_their_old_names(tmp_path):
    source = load("genbench.sources.retrieved:RetrievedSource")
    ctx = CheckContext("tiny", "tiny", None, None, {})
    new_dir, new_id = _index(tmp_path, True)
    old_dir, _ = _index(tmp_path, False)
    ((_, new),) = _specs({"source": "retrieved", "index": new_dir, "shots": 1})
    ((_, old),) = _specs({"source": "retrieved", "index": old_dir, "shots": 1})
    new, old = source.resolve(new, ctx), source.resolve(old, ctx)
    assert new.variant(0) == f"laion-{new_id[:8]}_s0" and new.identity_options()["index"] == new_id
    # The name and identity genbench 7cdfb1c gave a collection retrieved from an index directory `laion`.
    assert old.variant(0) == "laion_s0"
    assert old.identity_options() == {"index": os.path.abspath(old_dir), "image_format": "jpg", "jpeg_quality": 95,
                                      "image_size": None, "oversample": 3.0}


def test_produce_must_return_the_shards_slots_once_each_in_order():
    from genbench.shards.schema import Sample

    members = [(0, 0), (1, 0), (2, 0)]

    def made(slots, short=()):
        return ShardSamples([Sample(c, k, b"", "png") for c, k in slots], list(short))

    made(members).check(members, "ok")
    made([(0, 0), (2, 0)], [(1, 0)]).check(members, "ok")
    for bad in (made([(0, 0), (1, 0)]), made([(1, 0), (0, 0), (2, 0)]), made(members + [(3, 0)]),
                made([(0, 0), (0, 0), (2, 0)], [(1, 0)])):
        with pytest.raises(ValueError, match="produce"):
            bad.check(members, "tests.bad:Source")
