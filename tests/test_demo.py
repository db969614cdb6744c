"""The demo world (the README's main job) is deterministic and verifies by replay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aos.demo import run_demo


def test_demo_is_reproducible_and_replays(tmp_path: Path) -> None:
    a = run_demo(tmp_path / "a", orders=150)
    b = run_demo(tmp_path / "b", orders=150)
    assert a.snapshot_hash == a.replay_hash == b.snapshot_hash
    assert a.steps == b.steps > 150 * 3
    assert a.effects == a.receipts > 0
    assert a.ledger["confirmed"] + a.ledger["short"] > 0
    assert any((tmp_path / "a" / "blobs").iterdir())


def test_demo_command_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "aos", "demo", str(tmp_path / "d"), "--orders", "40"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "replay         verified" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "aos", "demo", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


# ------------------------------------------------------------------ the demo replaces only its own world
def aos_demo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aos", "demo", *args, "--orders", "20"], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def world_files(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def test_demo_refuses_a_world_it_did_not_make(tmp_path: Path) -> None:
    import aos
    from aos.demo import manifest as demo_manifest
    from conftest import make_counter_manifest

    tour = tmp_path / "shop.world"
    with aos.World.open(tour, make_counter_manifest()) as w:
        w.submit("test/Add@1", {"id": "a", "by": 5})
        w.run()
    same_manifest = tmp_path / "mine.world"  # the demo's manifest, but not made by aos demo: not proof
    with aos.World.open(same_manifest, demo_manifest) as w:
        w.submit("shop/StockAdded@1", {"sku": "sku-0001", "qty": 3})
        w.run()
    for path in (tour, same_manifest):
        before = world_files(path)
        out = aos_demo(str(path))
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert out.stderr.startswith(f"error: {path} holds a world that aos demo did not make")
        assert world_files(path) == before  # nothing deleted, nothing added
    with aos.World.open(tour, make_counter_manifest()) as w:
        assert w.state("test/Counter@1", "a")["n"] == 5


def test_demo_refuses_its_own_world_while_another_process_has_it_open(tmp_path: Path) -> None:
    import aos
    from aos.demo import manifest as demo_manifest

    path = tmp_path / "demo.world"
    assert aos_demo(str(path)).returncode == 0
    with aos.World.open(path, demo_manifest) as w:
        before = world_files(path)
        out = aos_demo(str(path))
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert "is open in another process (world.lock is held)" in out.stderr
        assert world_files(path) == before
        assert w.state("shop/Ledger@1") is not None


def test_demo_rebuilds_its_own_world_also_in_the_default_directory(tmp_path: Path) -> None:
    first = aos_demo(cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    world = tmp_path / "aos-demo.world"
    (world / "blobs" / "stray").write_bytes(b"left by someone")
    again = aos_demo(cwd=tmp_path)  # the earlier demo world is replaced, not refused
    assert again.returncode == 0, again.stderr
    assert not (world / "blobs" / "stray").exists()
    hashes = [line.split()[-1] for out in (first, again) for line in out.stdout.splitlines()
              if line.startswith("snapshot hash")]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aos-demo.world"]  # nothing left over
    assert "next, try:\n  aos info aos-demo.world\n" in again.stdout


def test_demo_next_commands_run(tmp_path: Path) -> None:
    out = aos_demo("d.world", cwd=tmp_path)
    assert out.returncode == 0
    commands = out.stdout.split("next, try:\n")[1].splitlines()
    assert len(commands) >= 4
    for line in commands:
        args = line.split()
        assert args[0] == "aos"
        ran = subprocess.run([sys.executable, "-m", "aos", *args[1:]], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
        assert ran.returncode == 0, (line, ran.stderr)
        assert ran.stdout.strip()
