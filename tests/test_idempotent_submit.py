"""Idempotent submission: ``World.submit(..., idempotency_key=)`` admits an event once per key, across restarts.

The key is journaled with the event (``EventAdmitted.idempotency_key``, an
optional field: records without it are written as before); the index of keys
is rebuilt from the newest snapshot and the journal after it, and a replay
makes the same index. A bad key is refused with ``IdempotencyKeyError``; the
index remembers the last ``idempotency_keep`` keyed admissions, and a key
older than that admits its event again (docs/storage.md, "Idempotent submission").
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.journal import JournalReader
from aos.records import EventAdmitted, decode_record, encode_record
from conftest import make_counter_manifest


def keyed_admissions(path: Path, m: aos.Manifest) -> list[tuple[int, str | None, Any]]:
    """``(seq, idempotency key, value)`` of every EventAdmitted in the journal, read from its files."""
    return [(r.seq, r.idempotency_key, canonical.decode(r.value))
            for _e, r in JournalReader(path / "journal", m.era).records() if isinstance(r, EventAdmitted)]


def journal_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((path / "journal").glob("*.seg")))


def test_a_duplicate_in_one_session_returns_the_first_number_and_admits_nothing(tmp_path: Path) -> None:
    m = make_counter_manifest()
    with aos.World.open(tmp_path / "w", m) as w:
        first = w.submit("test/Add@1", {"id": "a"}, idempotency_key="order-1")
        assert w.submit("test/Add@1", {"id": "a"}, idempotency_key="order-1") == first
        w.run()
        assert w.submit("test/Add@1", {"id": "a"}, idempotency_key="order-1") == first  # after its step too
        other = w.submit("test/Add@1", {"id": "a"}, idempotency_key="order-2")
        plain = w.submit("test/Add@1", {"id": "a"})
        assert (first, other, plain) == (0, 1, 2)  # the duplicates took no admission number
        w.run()
        assert w.state("test/Counter@1", "a")["n"] == 3
    assert [(s, k) for s, k, _v in keyed_admissions(tmp_path / "w", m)] == [(0, "order-1"), (1, "order-2"), (2, None)]


def test_submit_async_duplicate_resolves_with_the_first_number_once_durable(tmp_path: Path) -> None:
    m = make_counter_manifest()
    with aos.World.open(tmp_path / "w", m) as w:
        f1 = w.submit_async("test/Add@1", {"id": "a"}, idempotency_key="k")
        f2 = w.submit_async("test/Add@1", {"id": "a"}, idempotency_key="k")
        w.sync()
        assert f1.result(5) == f2.result(5) == 0
        assert w.submit("test/Add@1", {"id": "a"}) == 1


@pytest.mark.parametrize("snapshot_on_close", [True, False])
def test_keys_survive_a_clean_reopen(tmp_path: Path, snapshot_on_close: bool) -> None:
    m = make_counter_manifest()
    with aos.World.open(tmp_path / "w", m, snapshot_on_close=snapshot_on_close) as w:
        a = w.submit("test/Add@1", {"id": "a"}, idempotency_key="a")
        w.run()
        w.snapshot()  # "a" is in the snapshot ...
        b = w.submit("test/Add@1", {"id": "b"}, idempotency_key="b")  # ... "b" only in the journal after it
        w.run()
    with aos.World.open(tmp_path / "w", m) as w:
        assert w.submit("test/Add@1", {"id": "a"}, idempotency_key="a") == a
        assert w.submit_async("test/Add@1", {"id": "b"}, idempotency_key="b").result(5) == b
        assert w.submit("test/Add@1", {"id": "c"}, idempotency_key="c") == 2
        w.run()
        assert w.state("test/Counter@1", "a")["n"] == 1
    with aos.World.open(tmp_path / "w", m) as w:
        assert [w.submit("test/Add@1", {"id": k}, idempotency_key=k) for k in "abc"] == [a, b, 2]
    assert len(keyed_admissions(tmp_path / "w", m)) == 3


def test_a_duplicate_of_an_event_still_queued_for_the_running_thread_waits_for_its_number(tmp_path: Path) -> None:
    """The first submission with the key is queued in intake (the runner is inside a step): a duplicate from
    another thread returns the first's admission number once it is admitted, and nothing else is admitted."""
    m = aos.Manifest("test/idem-queued@1")
    release = threading.Event()

    @m.reducer("test/Slow@1", key="k", events=["test/Go@1"])
    def slow(ctx: Any, state: Any, event: Any) -> Any:
        if event.value.get("wait"):
            release.wait(30)
        return (state or 0) + 1

    with aos.World.open(tmp_path / "w", m, workers=0) as w:
        w.submit("test/Go@1", {"k": "x", "wait": True})
        out: dict[str, Any] = {}
        t = threading.Thread(target=lambda: out.setdefault("serve", w.serve(idle=0.01)))
        t.start()
        deadline = time.monotonic() + 10
        while w._intake.runner is None:  # serving, inside the slow step
            assert time.monotonic() < deadline
            time.sleep(0.001)
        first: Future[int] = w.submit_async("test/Go@1", {"k": "y"}, idempotency_key="K")
        assert "K" in w._intake.pending_keys  # queued: the runner has not admitted it yet
        dups: list[int] = []
        waiter = threading.Thread(target=lambda: dups.append(w.submit("test/Go@1", {"k": "y"}, idempotency_key="K")))
        waiter.start()
        time.sleep(0.05)
        assert not dups  # it waits for the first one's admission
        release.set()
        waiter.join(30)
        assert dups == [first.result(30)] == [1]
        w.stop()
        t.join(30)
    assert [(s, k) for s, k, _v in keyed_admissions(tmp_path / "w", m)] == [(0, None), (1, "K")]


def test_concurrent_submitters_with_one_key_admit_it_once(tmp_path: Path) -> None:
    m = make_counter_manifest()
    with aos.World.open(tmp_path / "w", m, workers=2, offload="all") as w:
        out: dict[str, Any] = {}
        t = threading.Thread(target=lambda: out.setdefault("serve", w.serve(idle=0.01)))
        t.start()
        results: list[list[int]] = [[] for _ in range(4)]

        def produce(i: int) -> None:
            for j in range(60):
                results[i].append(w.submit("test/Add@1", {"id": j % 3}, idempotency_key=f"k{j}"))

        threads = [threading.Thread(target=produce, args=(i,)) for i in range(4)]
        for p in threads:
            p.start()
        for p in threads:
            p.join(60)
        w.stop()
        t.join(30)
        assert results[0] == results[1] == results[2] == results[3]
        assert sorted(results[0]) == list(range(60))
    assert sorted(k for _s, k, _v in keyed_admissions(tmp_path / "w", m)) == sorted(f"k{j}" for j in range(60))


@pytest.mark.parametrize("key, problem", [
    ("", "must not be empty"),
    (7, "must be a str, got int"),
    (b"abc", "must be a str, got bytes"),
    ("x" * 256, "is 256 UTF-8 bytes long; at most 255"),
    ("é" * 128, "is 256 UTF-8 bytes long"),
    ("\ud800", "lone surrogate"),
])
def test_a_bad_key_is_refused_with_a_typed_error_and_nothing_is_admitted(tmp_path: Path, key: Any,
                                                                         problem: str) -> None:
    m = make_counter_manifest()
    with aos.World.open(tmp_path / "w", m) as w:
        for submit in (w.submit, w.submit_async):
            with pytest.raises(aos.IdempotencyKeyError, match="idempotency_key") as info:
                submit("test/Add@1", {"id": "a"}, idempotency_key=key)
            assert problem in str(info.value) and "test/Add@1" in str(info.value)
            assert isinstance(info.value, aos.AdmissionError)
        assert w.submit("test/Add@1", {"id": "a"}, idempotency_key="x" * 255) == 0  # the longest key is fine
    assert len(keyed_admissions(tmp_path / "w", m)) == 1


def test_keys_past_the_retention_bound_admit_their_event_again(tmp_path: Path) -> None:
    m = make_counter_manifest()
    with aos.World.open(tmp_path / "w", m, idempotency_keep=3) as w:
        seqs = [w.submit("test/Add@1", {"id": "a"}, idempotency_key=f"k{i}") for i in range(4)]  # k0 forgotten
        assert w.submit("test/Add@1", {"id": "a"}, idempotency_key="k3") == seqs[3]
        assert w.submit("test/Add@1", {"id": "a"}, idempotency_key="k1") == seqs[1]
        again = w.submit("test/Add@1", {"id": "a"}, idempotency_key="k0")  # expired: admitted again
        assert again == 4
        w.run()
    # reopened with the same bound: k0 (again), k3 and ... k1 is now the oldest of k1, k2, k3, k0 -> forgotten
    with aos.World.open(tmp_path / "w", m, idempotency_keep=3) as w:
        assert w.submit("test/Add@1", {"id": "a"}, idempotency_key="k0") == 4
        assert w.submit("test/Add@1", {"id": "a"}, idempotency_key="k3") == 3
        assert w.submit("test/Add@1", {"id": "a"}, idempotency_key="k1") == 5  # expired
    with pytest.raises(aos.ArgumentError, match="idempotency_keep"):
        aos.World.open(tmp_path / "w", m, idempotency_keep=0)
    assert [k for _s, k, _v in keyed_admissions(tmp_path / "w", m)] == ["k0", "k1", "k2", "k3", "k0", "k1"]


def test_replay_and_every_worker_count_give_the_same_journal_and_index_with_keyed_submits(tmp_path: Path) -> None:
    m = make_counter_manifest()
    journals = {}
    for workers in (0, 2):
        path = tmp_path / f"w{workers}"
        with aos.World.open(path, m, workers=workers, offload="all", snapshot_every=37) as w:
            for i in range(200):
                key = f"key-{i % 150}" if i % 4 else None  # keyed and plain events, duplicates among them
                w.submit("test/Add@1", {"id": i % 7, "forward_to": (i * 3) % 7}, idempotency_key=key)
                if i % 50 == 0:
                    w.run()
            w.run()
            index = w._kernel.submit_keys.export()
            h = w.snapshot_hash()
        journals[workers] = journal_bytes(path)
        r = aos.replay(path, m)
        assert r.verify() == h
        assert r.kernel is not None and r.kernel.submit_keys.export() == index
        assert aos.replay(path, m).verify(workers=2) == h
        with aos.World.open(path, m) as w2:  # from the newest snapshot + tail
            assert w2._kernel.submit_keys.export() == index
    assert journals[0] == journals[2]
    keys = [k for _s, k, _v in keyed_admissions(tmp_path / "w0", m) if k is not None]
    assert len(keys) == len(set(keys)) == len({i % 150 for i in range(200) if i % 4}) == 125


def test_a_record_without_a_key_is_written_as_before_and_one_with_a_key_round_trips() -> None:
    plain = EventAdmitted(1, "a", b"\x01", 0, 3)
    # the bytes this record had before idempotency_key existed
    assert encode_record(plain).hex() == ("a66373657101646b696e646d4576656e7441646d69747465646576616c7565410166"
                                          "736368656d616161676c616e655f6964006a76697369626c655f617403")
    keyed = EventAdmitted(1, "a", b"\x01", 0, 3, None, "order-1")
    data = encode_record(keyed)
    assert decode_record(data) == keyed and data != encode_record(plain)
    assert b"idempotency_key" in data
    assert canonical.encode(canonical.decode(data)) == data  # canonical


def test_fleet_submit_refuses_a_key_with_a_typed_error(tmp_path: Path) -> None:
    with aos.Fleet.open(tmp_path / "fleet", "fleet_world:commuting", lanes=1) as fleet:
        with pytest.raises(aos.IdempotencyKeyError, match="a fleet takes no idempotency_key"):
            fleet.submit("fleet/Add@1", {"k": "a", "n": 1, "tag": "t"}, idempotency_key="k")
        fleet.submit("fleet/Add@1", {"k": "a", "n": 1, "tag": "t"})  # without one: as before
