"""The lane of a cell: a stable hash of its key, fixed for good (a fleet's journals depend on it)."""

from __future__ import annotations

import collections

import pytest

import aos
from aos.lane import Lane, lane_of_key


def test_lane_of_key_is_pinned():
    # Changing the hash would move cells of every existing fleet to other lanes: these values are the contract.
    assert [lane_of_key(i, 4) for i in range(12)] == [1, 0, 3, 1, 0, 0, 0, 0, 2, 2, 1, 2]
    assert [lane_of_key(k, 16) for k in ("a", "b", b"a", -1)] == [
        lane_of_key("a", 16), lane_of_key("b", 16), lane_of_key(b"a", 16), lane_of_key(-1, 16)]
    assert lane_of_key("anything", 1) == 0


def test_keys_of_different_types_are_different_keys():
    assert len({lane_of_key(k, 1 << 12) for k in ("1", 1, b"1")}) == 3


def test_lanes_are_balanced():
    counts = collections.Counter(lane_of_key(i, 8) for i in range(8_000))
    assert set(counts) == set(range(8))
    assert min(counts.values()) > 850 and max(counts.values()) < 1150


def test_non_keyed_cells_live_in_the_home_lane():
    lane = Lane(2, 4, home=2)
    assert lane.of(None) == 2 and lane.holds(None)
    assert not Lane(1, 4, home=2).holds(None)
    assert Lane(1, 4).holds(3) == (lane_of_key(3, 4) == 1)


@pytest.mark.parametrize("args, word", [((0, 0), "lanes"), ((4, 4), "lane_id"), ((0, 2, 2), "home"),
                                        ((True, 2), "lane_id"), ((0, 5000), "lanes"), ((-1, 2), "lane_id")])
def test_a_bad_lane_is_refused(args, word):
    with pytest.raises(aos.ArgumentError, match=word):
        Lane(*args)
