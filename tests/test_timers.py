"""Durable timers: ``timer.set`` with ``after_ms`` or ``at``; the deadline survives a reopen."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.effect_state import now_ms
from aos.journal import JournalReader
from aos.records import ReceiptAppended


def timers_manifest() -> aos.Manifest:
    m = aos.Manifest("test/timers@1")
    m.capability("timers", effect="timer.set", budget=1_000)

    @m.reducer("test/Alarm@1", key="id", events=["test/Arm@1"])
    def alarm(ctx: Any, state: Any, event: Any) -> Any:
        if event.schema == "sys/Receipt@1":
            return dict(state, rang=[event.value["status"], event.value["payload"]])
        ctx.effect("timer.set", event.value["params"], cost=1)
        return {"rang": None}

    return m


def arm(w: aos.World, key: str, params: Any) -> None:
    w.submit("test/Arm@1", {"id": key, "params": params})


def deadline_of(w: aos.World, timeout: float = 10) -> int:
    """The fixed deadline of the world's one pending timer (once its dispatch has fixed it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = [s.deadline_ms for s in w.effect_status() if s.deadline_ms is not None]
        if got:
            return got[0]
        time.sleep(0.005)
    raise AssertionError("the timer's deadline was never fixed")


def test_a_timer_keeps_its_deadline_across_a_reopen(tmp_path: Path) -> None:
    m = timers_manifest()
    before = now_ms()
    with aos.World.open(tmp_path / "w", m) as w:
        arm(w, "a", {"after_ms": 600_000})
        w.run()
        first = deadline_of(w)
    assert before + 600_000 <= first <= now_ms() + 600_000
    time.sleep(0.05)  # a timer armed again at the reopen would end at least this much later
    with aos.World.open(tmp_path / "w", m) as w:
        assert deadline_of(w) == first
        (st,) = w.effect_status()
        assert st.kind == "timer.set" and not st.parked
    assert (tmp_path / "w" / "effects.cbor").is_file()


def test_an_overdue_timer_fires_at_once_after_a_reopen(tmp_path: Path) -> None:
    m = timers_manifest()
    with aos.World.open(tmp_path / "w", m) as w:
        arm(w, "a", {"after_ms": 1_500})
        w.run()
        first = deadline_of(w)
    while now_ms() <= first:  # the world is closed past the deadline
        time.sleep(0.05)
    with aos.World.open(tmp_path / "w", m) as w:
        t0 = time.monotonic()
        assert w.run(settle=True, timeout=30).outstanding == 0
        assert time.monotonic() - t0 < 1.0  # not the full 1.5 s again
        assert w.state("test/Alarm@1", "a") == {"rang": ["ok", {"after_ms": 1_500}]}
        assert w.effect_status() == []
    assert canonical.decode((tmp_path / "w" / "effects.cbor").read_bytes())["effects"] == []  # forgotten


@pytest.mark.parametrize("mode", ["inline", "background"])
def test_an_absolute_deadline(tmp_path: Path, mode: str) -> None:
    m = timers_manifest()
    with aos.World.open(tmp_path / "w", m, effects=mode) as w:
        at = now_ms() + 150
        arm(w, "soon", {"at": at})
        arm(w, "past", {"at": 1})
        w.run(settle=True, timeout=30)
        assert now_ms() >= at
        assert w.state("test/Alarm@1", "soon") == {"rang": ["ok", {"at": at}]}
        assert w.state("test/Alarm@1", "past") == {"rang": ["ok", {"at": 1}]}


@pytest.mark.parametrize("params, message", [
    ({}, "exactly one of 'after_ms'"),
    ({"after_ms": 1, "at": 2}, "exactly one of 'after_ms'"),
    ({"after_ms": -1}, "'after_ms' must be an int >= 0, got -1"),
    ({"at": True}, "'at' must be an int >= 0, got True"),
    ({"after_ms": 1.5}, "'after_ms' must be an int >= 0"),
    ([1, 2], "exactly one of 'after_ms'"),
])
def test_bad_timer_params_are_an_error_receipt(tmp_path: Path, params: Any, message: str) -> None:
    m = timers_manifest()
    with aos.World.open(tmp_path / "w", m, effects="inline") as w:
        arm(w, "a", params)
        w.run()
        status, payload = w.state("test/Alarm@1", "a")["rang"]
    assert status == "error" and payload["error"] == "InvalidTimerError" and message in payload["message"]
    (got,) = [r for _e, r in JournalReader(tmp_path / "w" / "journal", m.era).records()
              if isinstance(r, ReceiptAppended)]
    assert got.cost == 0


def test_timer_receipts_depend_on_the_inputs_only(tmp_path: Path) -> None:
    m = timers_manifest()

    def journal(path: Path) -> list[bytes]:
        with aos.World.open(path, m, effects="inline") as w:
            arm(w, "a", {"after_ms": 5})
            arm(w, "b", {"at": 7})
            w.run()
        return [e.payload for e in JournalReader(path / "journal", m.era).entries()]

    first = journal(tmp_path / "one")
    time.sleep(0.02)
    assert journal(tmp_path / "two") == first  # the wall-clock deadline is not journaled
