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
