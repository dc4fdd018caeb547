"""The shard layout: stable under growth, prefixes for k-shot subsets, every slot exactly once."""

from __future__ import annotations

import pytest

from genbench.errors import UsageError
from genbench.shards.layout import Layout
from genbench.shards.schema import parse_key, sample_key


@pytest.mark.parametrize("classes,size", [(10, 40), (7, 3), (100, 1000), (3, 1)])
def test_every_slot_once_and_in_its_shard(classes, size):
    lay = Layout(classes, size)
    shots = 13
    seen = []
    for sid in range(lay.num_shards(shots)):
        members = lay.members(sid, shots)
        assert 0 < len(members) <= size
        assert all(lay.shard_of(c, k) == sid for c, k in members)
        seen += members
    assert sorted(seen) == sorted((c, k) for c in range(classes) for k in range(shots))


def test_growth_keeps_full_shards_and_prefix_property():
    lay = Layout(10, 40)  # 4 shots per shard
    small, big = 8, 20
    for sid in range(lay.num_shards(small)):
        assert lay.members(sid, small) == lay.members(sid, big)  # 500 -> 1000 shots reuses every shard
    # A k-shot subset is a prefix of the shard list: shards past it hold only shots >= k.
    k = 6
    for sid in range(lay.num_shards(big)):
        members = lay.members(sid, big)
        if sid >= lay.num_shards(k):
            assert all(shot >= k for _, shot in members)


def test_partial_last_shard_is_completed_by_growth():
    lay = Layout(10, 40)
    assert len(lay.members(1, 6)) == 20  # shots 4-5 only
    assert lay.members(1, 8)[:20] == lay.members(1, 6)


def test_keys_have_no_dots_and_round_trip():
    key = sample_key(42, 17)
    assert key == "c0042-k000017" and "." not in key
    assert parse_key(key) == (42, 17)
    with pytest.raises(ValueError):
        parse_key("c42.k17")


def test_bad_shard_size():
    with pytest.raises(UsageError, match="shard_size"):
        Layout(10, 0)
