"""The compiled sequencer: its scheduling rule and its persistence."""

from __future__ import annotations

import importlib.machinery

import pytest

import aos._core
from aos._core import Sequencer


def drain(s: Sequencer) -> list[tuple[int, int, int]]:
    out = []
    while (t := s.next()) is not None:
        out.append(t)
    return out


def test_core_is_a_compiled_extension() -> None:
    path = aos._core.sequencer.__file__
    assert path is not None
    assert any(path.endswith(suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES), path
    assert isinstance(aos._core.sequencer.__loader__, importlib.machinery.ExtensionFileLoader)


def test_round_robin_at_most_one_step_per_cell_per_tick() -> None:
    s = Sequencer(window=4)
    for i in range(5):
        s.deliver(0, i)          # a hot cell
    s.deliver(1, 100)
    s.deliver(2, 200)
    s.deliver(1, 101)
    got = drain(s)
    assert [t for t, _c, _i in got] == list(range(1, 9))
    assert [c for _t, c, _i in got] == [0, 1, 2, 0, 1, 0, 0, 0]
    # each cell's inputs come out in mailbox order
    assert [i for _t, c, i in got if c == 0] == [0, 1, 2, 3, 4]
    assert [i for _t, c, i in got if c == 1] == [100, 101]


def test_cold_cell_is_not_stuck_behind_hot_cell() -> None:
    s = Sequencer(window=8)
    for i in range(10_000):
        s.deliver(0, i)
    assert s.next() == (1, 0, 0)
    s.deliver(7, 99)  # a single event for a cold cell arrives
    assert s.next() == (2, 0, 1)  # the hot cell was already queued in the ring
    assert s.next() == (3, 7, 99)


def test_emitted_inputs_become_visible_window_tickets_later() -> None:
    s = Sequencer(window=3)
    for i in range(6):
        s.deliver(0, i)
    assert s.next() == (1, 0, 0)
    s.deliver_emitted(1, 5, 50)  # emitted by ticket 1: visible from ticket 4
    assert s.pending == 1
    assert s.next() == (2, 0, 1)
    assert s.next() == (3, 0, 2)
    assert s.next() == (4, 0, 3)  # cell 0 was ahead in the ring; cell 5 joins behind it
    assert s.next() == (5, 5, 50)
    assert s.pending == 0


def test_pending_released_when_nothing_else_is_ready() -> None:
    s = Sequencer(window=64)
    s.deliver(0, 0)
    assert s.next() == (1, 0, 0)
    s.deliver_emitted(1, 1, 1)
    s.deliver_emitted(1, 2, 2)
    assert s.has_work()
    assert drain(s) == [(2, 1, 1), (3, 2, 2)]
    assert not s.has_work()


def test_emitted_must_come_in_commit_order() -> None:
    s = Sequencer(window=2)
    for i in range(3):
        s.deliver(0, i)
    s.next(), s.next()
    s.deliver_emitted(2, 1, 10)
    with pytest.raises(ValueError, match="commit order"):
        s.deliver_emitted(1, 1, 11)
    with pytest.raises(ValueError, match="not been assigned"):
        s.deliver_emitted(9, 1, 12)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        Sequencer(window=0)
    with pytest.raises(ValueError):
        Sequencer().deliver(-1, 0)


def test_export_and_restore_give_the_same_future() -> None:
    a = Sequencer(window=5)
    for i in range(40):
        a.deliver(i % 7, i)
    for _ in range(9):
        t, c, i = a.next()
        a.deliver_emitted(t, (c + 3) % 11, 1000 + i)
    state = a.export_state()
    b = Sequencer.from_state(state)
    assert b.export_state() == state
    assert drain(a) == drain(b)


def test_growth_to_many_cells_and_inputs() -> None:
    s = Sequencer(window=16)
    n = 50_000
    for i in range(n):
        s.deliver(i, i)
    assert s.queued == n and s.ready == n
    got = drain(s)
    assert [c for _t, c, _i in got] == list(range(n))
    assert s.queued == 0


def test_poll_waits_for_what_the_next_ticket_depends_on() -> None:
    s = Sequencer(window=3)
    for i in range(3):
        s.deliver(0, i)
    s.deliver(1, 10)
    assert s.poll(0) == (1, 0, 0)
    assert s.poll(0) == (2, 1, 10)
    assert s.poll(0) is False  # cell 0's ticket 1 has not committed
    assert s.poll(1) == (3, 0, 1)
    assert s.poll(1) is False  # ticket 4 needs ticket 1 committed (window) and cell 0's ticket 3
    assert s.poll(2) is False
    assert s.poll(3) == (4, 0, 2)
    assert s.poll(3) is False  # the ring is empty: ticket 4 may still emit
    assert s.poll(4) is None  # nothing left at all


def test_poll_waits_for_a_cells_step_in_flight_across_the_32_bit_ticket_boundary() -> None:
    # the sequencer keeps the low 32 bits of each cell's last ticket: the rule must hold where they wrap
    first = 2**32 - 1
    s = Sequencer(window=3, first_ticket=first)
    for i in range(3):
        s.deliver(0, i)
    s.deliver(1, 10)
    c = first - 1  # everything before the first ticket has committed
    assert s.poll(c) == (first, 0, 0)
    assert s.poll(c) == (first + 1, 1, 10)
    assert s.poll(c) is False  # cell 0's ticket 2**32 - 1 has not committed
    assert s.poll(first) == (first + 2, 0, 1)
    assert s.poll(first + 1) is False  # cell 0's ticket 2**32 + 1 is in flight
    assert s.poll(first + 2) == (first + 3, 0, 2)
    assert s.poll(first + 3) is None


def test_mailbox_depth_and_cell_ids_far_apart() -> None:
    s = Sequencer(window=4)
    s.deliver(1_000_000, 1)
    s.deliver(3, 2)
    s.deliver(1_000_000, 3)
    assert s.mailbox_depth(1_000_000) == 2 and s.mailbox_depth(3) == 1
    assert s.mailbox_depth(500_000) == 0 and s.mailbox_depth(2_000_000) == 0 and s.mailbox_depth(-1) == 0
    assert drain(s) == [(1, 1_000_000, 1), (2, 3, 2), (3, 1_000_000, 3)]
    assert s.mailbox_depth(1_000_000) == 0
    s.deliver(500_000, 4)  # a cell between the two, never used before: it starts empty
    assert s.mailbox_depth(500_000) == 1 and drain(s) == [(4, 500_000, 4)]


def test_poll_window_bounds_how_far_ahead_tickets_go() -> None:
    s = Sequencer(window=2)
    for c in range(5):
        s.deliver(c, c)
    assert s.poll(0) == (1, 0, 0)
    assert s.poll(0) == (2, 1, 1)
    assert s.poll(0) is False  # ticket 3 may see what ticket 1 emits
    s.deliver_emitted(1, 9, 99)
    assert s.poll(1) == (3, 2, 2)  # emitted by 1, visible from 3: cell 9 joins the ring's end
    assert s.poll(3) == (4, 3, 3) and s.poll(3) == (5, 4, 4)
    assert s.poll(3) is False and s.poll(4) == (6, 9, 99)


def test_poll_releases_pending_only_when_everything_committed() -> None:
    s = Sequencer(window=50)
    s.deliver(0, 0)
    assert s.poll(0) == (1, 0, 0)
    s.deliver_emitted(1, 1, 5)
    assert s.poll(0) is False
    assert s.poll(1) == (2, 1, 5)


def test_priority_classes_serve_urgent_cells_first() -> None:
    s = Sequencer(window=8, aging=1000)
    s.deliver(10, 0, 2)
    s.deliver(11, 1, 1)
    s.deliver(12, 2, 0)
    s.deliver(13, 3, 1)
    assert [s.next()[1] for _ in range(4)] == [12, 11, 13, 10]


def test_aging_serves_a_long_waiting_low_priority_cell() -> None:
    s = Sequencer(window=8, aging=5)
    s.deliver(99, 0, 3)  # background class
    for i in range(20):
        s.deliver(1, 100 + i, 0)  # an urgent cell with many inputs
    order = [s.next()[1] for _ in range(8)]
    # the background cell waited 5 tickets: then it is served before the urgent one
    assert order == [1, 1, 1, 1, 1, 99, 1, 1]


def test_export_restore_keeps_classes_and_waits() -> None:
    a = Sequencer(window=4, aging=6)
    for i in range(30):
        a.deliver(i % 9, i, i % 4)
    for _ in range(7):
        t, c, i = a.next()
        a.deliver_emitted(t, (c + 5) % 13, 500 + i, (c + 1) % 4)
    b = Sequencer.from_state(a.export_state())
    assert b.export_state() == a.export_state()
    assert drain(a) == drain(b)


def test_invalid_priority() -> None:
    with pytest.raises(ValueError, match="priority"):
        Sequencer().deliver(0, 0, 4)
    with pytest.raises(ValueError, match="aging"):
        Sequencer(aging=0)
