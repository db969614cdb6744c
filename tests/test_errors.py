"""Error messages say what was wrong and where, briefly, and name what to do."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from conftest import make_counter_manifest


def test_a_too_deep_value_names_its_path_briefly(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    deep: Any = 0
    for _ in range(canonical.MAX_DEPTH + 5):
        deep = [deep]
    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        with pytest.raises(aos.UnencodableValueError) as info:
            w.submit("test/Add@1", {"id": "a", "deep": deep})
    message = str(info.value)
    assert "value['deep'][0][0]…[0][0][0] (400 levels): containers nested deeper than 400" in message
    assert len(message) < 200
    assert info.value.path == "value['deep']" + "[0]" * 399  # the full path stays available


def test_a_cyclic_value_names_its_path_briefly() -> None:
    cycle: list[Any] = []
    cycle.append({"again": cycle})
    with pytest.raises(aos.UnencodableValueError, match=r"^x: value\[0\]\['again'\]\[0\]…") as info:
        canonical.encode(cycle, where="x")
    assert len(str(info.value)) < 200


def test_short_paths_are_shown_whole() -> None:
    with pytest.raises(aos.UnencodableValueError) as info:
        canonical.encode({"it's": {b"k]": {3: [[[[{"a": {1.5}}]]]]}}}, where="s")
    assert str(info.value) == ("s: value[\"it's\"][b'k]'][3][0][0][0][0]['a']: type set is not in the value model")


def test_a_dataclass_value_is_encoded_as_its_field_map(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    @dataclasses.dataclass
    class Line:
        sku: str
        qty: int

    assert canonical.encode({"line": Line("s", 1)}) == canonical.encode({"line": {"sku": "s", "qty": 1}})
    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        w.submit("test/Add@1", {"id": "a", "line": Line("s", 1)})
    with pytest.raises(aos.UnencodableValueError, match=r"value\['line'\]\['qty'\]: type set is not in the"):
        canonical.encode({"line": Line("s", {1})})  # type: ignore[arg-type]


def test_manifest_mismatch_and_era_change_name_the_world(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    path = tmp_path / "shop.world"
    with aos.World.open(path, counter_manifest):
        pass
    with pytest.raises(aos.ManifestMismatchError, match=f"world {path} was created with manifest 'test/counter@1'"):
        aos.World.open(path, make_counter_manifest("test/other@1"))
    changed = make_counter_manifest()
    changed.schema("test/Extra@1")
    with pytest.raises(aos.EraChangeError, match=f"era change in world {path} of manifest test/counter@1"):
        aos.World.open(path, changed)
    with pytest.raises(aos.EraChangeError, match=f"world {path}"):
        aos.replay(path, changed)


def test_state_of_a_keyed_reducer_without_a_key_is_a_typed_error(tmp_path: Path,
                                                                 counter_manifest: aos.Manifest) -> None:
    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        w.submit("test/Add@1", {"id": "a"})
        w.run()
        with pytest.raises(aos.CellKeyError, match="keyed by 'id': pass a key") as info:
            w.state("test/Counter@1")
        assert isinstance(info.value, TypeError) and isinstance(info.value, aos.AosError)
        with pytest.raises(aos.CellKeyError, match="is not keyed: pass no key"):
            w.state("test/Total@1", "a")
    r = aos.replay(tmp_path / "w", counter_manifest)
    with pytest.raises(aos.CellKeyError):
        r.state("test/Counter@1")
    assert r.state("test/Counter@1", "a")["n"] == 1


def test_aos_state_without_the_key_of_a_keyed_reducer_fails(tmp_path: Path) -> None:
    from aos.demo import run_demo

    run_demo(tmp_path / "d.world", orders=5)
    out = subprocess.run([sys.executable, "-m", "aos", "state", str(tmp_path / "d.world"), "shop/Order@1",
                          "--manifest", "aos.demo:manifest"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip() == ("error: aos state shop/Order@1: reducer shop/Order@1 is keyed by 'order_id': "
                                  "pass a key")
