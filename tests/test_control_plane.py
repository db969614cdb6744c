"""The control plane: global budgets split into journaled per-lane grants, never overspent across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from aos.control_plane import GRANTS, ControlPlane, Grant, read_grants
from aos.errors import StorageError
from aos.fleet_log import frame


def test_first_grants_are_half_an_even_share_and_journaled(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path, {"mail": 100, "none": 0}, 4)
    first = cp.initial()
    assert [(g.lane, g.cap, g.amount, g.grant) for g in first] == [(i, "mail", 12, 1) for i in range(4)]
    assert cp.left("mail") == 52
    assert read_grants(tmp_path / GRANTS)[0] == first
    assert cp.initial() == []  # made once
    again = ControlPlane(tmp_path, {"mail": 100, "none": 0}, 4)
    assert again.grants == first and again.left("mail") == 52 and again.initial() == []


def test_top_up_gives_what_is_left_and_never_more(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path, {"mail": 10}, 2)
    cp.initial()  # 2 + 2
    g = cp.top_up({1: {"mail": 3}})
    assert g == [Grant(1, "mail", 3, 2)]
    g = cp.top_up({0: {"mail": 100}, 1: {"mail": 100}})
    assert g == [Grant(0, "mail", 3, 2)]  # all that was left, to the first asking lane
    assert cp.left("mail") == 0 and cp.top_up({1: {"mail": 1}}) == []
    assert sum(x.amount for x in ControlPlane(tmp_path, {"mail": 10}, 2).grants) == 10


def test_a_single_lane_fleet_grants_nothing(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path, {"mail": 10}, 1)
    assert not cp.active and cp.initial() == [] and cp.top_up({0: {"mail": 5}}) == []
    assert not (tmp_path / GRANTS).exists()


def test_a_torn_last_grant_is_cut_off_and_was_never_given(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path, {"mail": 10}, 2)
    cp.initial()
    log = tmp_path / GRANTS
    whole = log.read_bytes()
    log.write_bytes(whole + frame(Grant(0, "mail", 5, 2).fields())[:-3])  # a crash while appending
    cp2 = ControlPlane(tmp_path, {"mail": 10}, 2)
    assert len(cp2.grants) == 2 and cp2.left("mail") == 6
    assert log.read_bytes() == whole
    assert cp2.top_up({0: {"mail": 5}}) == [Grant(0, "mail", 5, 2)]  # the id is used again: never sent before


def test_damage_inside_the_log_is_refused(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path, {"mail": 10}, 2)
    cp.initial()
    log = tmp_path / GRANTS
    data = bytearray(log.read_bytes())
    data[6] ^= 0xFF  # inside the first record's body
    log.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="record at offset 0 fails its checksum"):
        ControlPlane(tmp_path, {"mail": 10}, 2)


def test_a_log_over_the_budget_is_refused(tmp_path: Path) -> None:
    ControlPlane(tmp_path, {"mail": 10}, 2).initial()  # 2 + 2 granted
    with pytest.raises(StorageError, match="over its budget 3"):
        ControlPlane(tmp_path, {"mail": 3}, 2)
