"""The fleet: K lanes in processes of their own, driven as one world (docs/fleet.md).

The oracle is one world (inline executor) fed the same inputs: for
commuting reducers the fleet's merged state equals it for K = 1, 2, 4.
Each lane's journal replays to its own bytes.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.fleet import FLEET_META, lane_path, read_fleet_meta
from aos.lane import CLIENT_SOURCE, Lane
from fleet_world import commuting, mail

MANIFEST = "fleet_world:commuting"


def workload(seed: int, n: int) -> list[tuple[str, dict[str, Any]]]:
    """Adds to random keys, and spreads whose emits cross lanes."""
    rnd = random.Random(seed)
    keys = [f"k{i}" for i in range(12)] + list(range(5))
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        if rnd.random() < 0.3:
            out.append(("fleet/Spread@1", {"k": rnd.choice(keys), "n": rnd.randint(1, 9),
                                           "to": rnd.sample(keys, rnd.randint(1, 4))}))
        elif rnd.random() < 0.05:
            out.append(("fleet/Note@1", {"i": i}))
        else:
            out.append(("fleet/Add@1", {"k": rnd.choice(keys), "n": rnd.randint(-5, 50), "tag": f"t{i % 7}"}))
    return out


def oracle(tmp: Path, events: list[tuple[str, Any]]) -> list[tuple[str, Any, Any]]:
    """(reducer, key, state) of every cell of one world fed ``events``, in canonical order."""
    with aos.World.open(tmp / "oracle", commuting, workers=0) as w:
        for schema, value in events:
            w.submit(schema, value)
        w.run()
        return merged(w)


def merged(source: Any) -> list[tuple[str, Any, Any]]:
    return sorted(((r, k, s) for r, k, s in source.iter_states()), key=lambda c: canonical.encode([c[0], c[1]]))


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_the_fleet_equals_one_world_and_each_lane_replays(tmp_path: Path, lanes: int) -> None:
    events = workload(lanes, 160)
    first, second = events[:100], events[100:]
    path = tmp_path / "fleet"
    with aos.Fleet.open(path, MANIFEST, lanes=lanes) as fleet:
        for schema, value in first[:10]:
            fleet.submit(schema, value)
        fleet.submit_many(first[10:])
        r = fleet.run()
        assert r.steps > 0 and len(r.lane_steps) == lanes
        if lanes > 1:
            assert r.messages > 0  # spreads crossed lanes
        assert merged(fleet) == oracle(tmp_path / "a", first)
        assert [(r_, k) for r_, k, _ in merged(fleet)] == fleet.cells()
        assert fleet.state("fleet/Total@1") == sum(v["n"] for s, v in first if s == "fleet/Add@1") + sum(
            v["n"] * len(v["to"]) for s, v in first if s == "fleet/Spread@1")
        snap = fleet.snapshot()
        assert len(snap.lanes) == lanes and snap.hash == fleet.snapshot_hash()
    meta = read_fleet_meta(path)
    assert (meta["lanes"], meta["home"], meta["manifest"], meta["backend"]) == (lanes, 0, MANIFEST, "local")
    replayed = aos.replay_fleet(path)
    assert replayed.hash == snap.hash and replayed.lanes == tuple(s.hash for s in snap.lanes)
    for i in range(lanes):  # each lane is a world of its own, with its lane in its metadata
        assert aos.replay(lane_path(path, i), commuting).verify() == snap.lanes[i].hash

    with aos.Fleet.open(path, MANIFEST) as fleet:  # reopened: lanes as stored; client numbering goes on
        assert fleet.lanes == lanes
        fleet.submit_many(second)
        fleet.run()
        assert merged(fleet) == oracle(tmp_path / "b", events)
        marks = fleet.backend.call_many({i: ("marks", ()) for i in range(lanes)})
        assert sum(m.get(CLIENT_SOURCE, 0) for m in marks.values()) >= len(events)
    aos.Fleet.verify(path)


def test_a_lane_host_killed_mid_run_loses_nothing(tmp_path: Path) -> None:
    events = workload(7, 200)
    path = tmp_path / "fleet"
    with aos.Fleet.open(path, MANIFEST, lanes=2) as fleet:
        fleet.submit_many(events[:120])
        fleet.run(max_rounds=1)  # messages in flight between the lanes
        fleet.kill(1)
        fleet.submit_many(events[120:160])  # to a lane that is down: restarted, retried
        fleet.kill(0)
        fleet.run(max_rounds=1)
        fleet.kill(1)
        r = fleet.run()
        for schema, value in events[160:]:
            fleet.submit(schema, value)
        fleet.kill(0)
        fleet.run()
        assert merged(fleet) == oracle(tmp_path, events)
        m = fleet.metrics()
        assert m["restarts"] >= 4 and m["in_flight"] == 0 and r.rounds >= 1
        assert [set(x) >= {"steps", "steps_per_s", "queue_depth", "in_flight"} for x in m["lanes"]] == [True] * 2
    aos.replay_fleet(path)


def test_fleet_metadata_is_fixed_at_creation(tmp_path: Path) -> None:
    path = tmp_path / "fleet"
    with aos.Fleet.open(path, MANIFEST, lanes=2, home=1, durability="always") as fleet:
        assert fleet.home == 1 and fleet.lane_of("fleet/Total@1") == 1
        assert fleet.lane_of("fleet/Counter@1", "x") == Lane(0, 2, 1).of("x")
        with pytest.raises(aos.WorldLockedError, match="fleet.lock"):
            aos.Fleet.open(path, MANIFEST)
        fleet.submit("fleet/Add@1", {"k": "x", "n": 2, "tag": "a"})
        fleet.run()
    meta = canonical.decode((path / FLEET_META).read_bytes())
    assert (meta["lanes"], meta["home"], meta["manifest_name"], meta["era"]) == (2, 1, "fleet/commuting@1",
                                                                                commuting.era.hex())
    with pytest.raises(aos.FleetError, match="has 2 lanes .* lanes=4"):
        aos.Fleet.open(path, MANIFEST, lanes=4)
    with pytest.raises(aos.FleetError, match="home lane 1"):
        aos.Fleet.open(path, MANIFEST, home=0)
    with pytest.raises(aos.ManifestMismatchError):
        aos.Fleet.open(path, "fleet_world:mailing")
    with pytest.raises(aos.ArgumentError, match="by reference"):
        aos.Fleet.open(path, commuting)  # type: ignore[arg-type]
    with pytest.raises(aos.ArgumentError, match="module:attribute"):
        aos.Fleet.open(tmp_path / "other", "fleet_world")
    with pytest.raises(aos.ArgumentError, match="set by the fleet"):
        aos.Fleet.open(tmp_path / "other", MANIFEST, lane=Lane())
    with pytest.raises(aos.WorldNotFoundError):
        aos.Fleet.open(tmp_path / "none", MANIFEST, create=False)
    with pytest.raises(aos.ArgumentError, match="backend must be"):
        aos.Fleet.open(tmp_path / "other", MANIFEST, backend="carrier-pigeon")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("not a fleet")
    with pytest.raises(aos.StorageError, match="not an aos fleet"):
        aos.Fleet.open(tmp_path / "junk", MANIFEST)


def test_a_lane_that_cannot_open_stops_the_fleet_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "fleet"
    (path / "lanes").mkdir(parents=True)
    (path / "lanes" / "001").write_text("in the way")
    with pytest.raises(aos.LaneUnavailableError, match="lane 1 ") as e:
        aos.Fleet.open(path, MANIFEST, lanes=2)
    assert e.value.lane == 1
    assert not (path / FLEET_META).exists()
    (path / "lanes" / "001").unlink()  # the fleet was released: it opens once the lane can
    with aos.Fleet.open(path, "fleet_world:commuting", lanes=2) as fleet:
        fleet.submit("fleet/Add@1", {"k": 1, "n": 1, "tag": "a"})
        fleet.run()
        assert fleet.state("fleet/Counter@1", 1) == 1
    (lane_path(path, 1) / "world.cbor").write_bytes(b"damaged")
    with pytest.raises(aos.LaneUnavailableError, match="lane 1 .*malformed world metadata") as e:
        aos.Fleet.open(path, MANIFEST)
    assert e.value.lane == 1 and isinstance(e.value.__cause__, aos.StorageError)
    with pytest.raises(aos.ArgumentError, match="building it raised RuntimeError"):
        aos.Fleet.open(tmp_path / "f2", "fleet_world:broken")


def test_a_closed_fleet_refuses_calls_and_bad_events_are_refused(tmp_path: Path) -> None:
    fleet = aos.Fleet.open(tmp_path / "fleet", MANIFEST, lanes=2)
    with pytest.raises(aos.UnknownSchemaError):
        fleet.submit("fleet/Nope@1", {"k": 1})
    with pytest.raises(aos.MissingKeyFieldError):
        fleet.submit("fleet/Add@1", {"n": 1})
    with pytest.raises(aos.MissingKeyFieldError):
        fleet.submit_many([("fleet/Add@1", {"k": 1, "n": 1, "tag": "a"}), ("fleet/Add@1", {"n": 1})])
    with pytest.raises(aos.CellKeyError):
        fleet.state("fleet/Counter@1")
    with pytest.raises(aos.UnknownReducerError):
        fleet.cells("fleet/Nope@1")
    assert fleet.cells() == []  # nothing of the refused batch was admitted
    fleet.close()
    fleet.close()
    for call in (lambda: fleet.submit("fleet/Add@1", {"k": 1, "n": 1, "tag": "a"}), fleet.run,
                 lambda: fleet.state("fleet/Total@1"), fleet.snapshot, fleet.metrics):
        with pytest.raises(aos.FleetClosedError):
            call()
    assert isinstance(aos.FleetClosedError("x"), aos.WorldClosedError)


def test_the_fleet_never_overspends_a_shared_budget(tmp_path: Path) -> None:
    path = tmp_path / "fleet"
    sends = [("fleet/Send@1", {"k": f"u{i % 9}", "i": i}) for i in range(40)]
    with aos.Fleet.open(path, "fleet_world:mailing", lanes=2, effects="manual") as fleet:
        fleet.submit_many(sends[:20])
        r = fleet.run()
        b = fleet.budget("mail")
        assert b["granted"] <= 10 and b["reserved"] + b["spent"] <= 10
        assert r.grants >= 1  # a lane ran out and got more
    with aos.Fleet.open(path, "fleet_world:mailing", effects="manual") as fleet:  # grants sent again: no-ops
        fleet.submit_many(sends[20:])
        fleet.run()
        b = fleet.budget("mail")
        assert sum(x["budget"] for x in b["lanes"]) == b["granted"] == 10
        assert b["reserved"] + b["spent"] == 10  # all of it used, none twice
        asked = sum(s["asked"] for _r, _k, s in fleet)
        denied = sum(s["denied"] for _r, _k, s in fleet)
        assert asked == 40 and denied == 30
    assert mail().capabilities["mail"].budget == 10
    aos.replay_fleet(path)


def test_an_event_logged_but_not_sent_reaches_all_its_lanes_on_reopen(tmp_path: Path) -> None:
    """A client killed between journaling an event in submits.log and sending it: the next open sends it."""
    from aos.admission import Admission
    from aos.fleet import SUBMITS
    from aos.fleet_log import frame, read_log

    path = tmp_path / "fleet"
    with aos.Fleet.open(path, MANIFEST, lanes=2) as fleet:
        fleet.submit("fleet/Add@1", {"k": "a", "n": 1, "tag": "first"})
        marks = fleet.backend.call_many({i: ("marks", ()) for i in range(2)})
    key_lane, home = Lane(0, 2, 0).of("b"), 0
    adm = Admission(commuting).check("fleet/Add@1", {"k": "b", "n": 5, "tag": "logged"})
    targets: list[int] = []
    for lane in sorted({key_lane, home}):
        targets += [lane, marks[lane].get(CLIENT_SOURCE, 0) + 1]
    with open(path / SUBMITS, "ab") as f:  # what submit journals before it sends, then the crash
        f.write(frame([adm.schema, adm.value, targets]))
        f.write(frame(["fleet/Add@1", adm.value, [0, 99]])[:-5])  # a torn record: never sent, dropped
    with aos.Fleet.open(path, MANIFEST) as fleet:
        fleet.run()
        assert fleet.state("fleet/Counter@1", "b") == 5 and fleet.state("fleet/Total@1") == 6
        assert fleet.state("fleet/Tags@1", "b") == ["logged"]
        fleet.submit("fleet/Add@1", {"k": "b", "n": 1, "tag": "after"})  # numbered after the logged one
        fleet.run()
        assert fleet.state("fleet/Counter@1", "b") == 6 and fleet.state("fleet/Total@1") == 7
    assert len(read_log(path / SUBMITS)[0]) == 3  # the torn record was cut off; the log is kept until it grows


def test_aos_fleet_commands(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from aos.cli import cli

    path = tmp_path / "fleet"
    with aos.Fleet.open(path, MANIFEST, lanes=2) as fleet:
        fleet.submit_many(workload(3, 40))
        fleet.run()
        total = fleet.state("fleet/Total@1")
        counter = fleet.state("fleet/Counter@1", "k1")
    run = CliRunner().invoke
    r = run(cli, ["fleet", "info", str(path)])
    assert r.exit_code == 0 and "2 (home lane 0)" in r.output and "fleet/commuting@1 (fleet_world:commuting)" \
        in r.output and str(lane_path(path, 1)) in r.output, r.output
    r = run(cli, ["fleet", "state", str(path), "fleet/Total@1"])
    assert (r.exit_code, r.output.strip()) == (0, str(total))
    r = run(cli, ["fleet", "state", str(path), "fleet/Counter@1", "k1"])
    assert (r.exit_code, r.output.strip()) == (0, "null" if counter is None else str(counter))
    r = run(cli, ["fleet", "replay", str(path), "--manifest", MANIFEST])
    assert r.exit_code == 0 and r.output.count("verified") == 3 and aos.replay_fleet(path).hash in r.output
    r = run(cli, ["fleet", "info", str(tmp_path / "nowhere")])
    assert r.exit_code != 0 and isinstance(r.exception, aos.WorldNotFoundError)
