"""The README's tour runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_tour_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme_tour"})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "{'lucky': 6, 'placed': True, 'reminded': True}"
    assert out[2] == out[3]  # the live hash equals the replayed one


def test_readme_starts_with_the_two_setup_commands() -> None:
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None and text.index(block.group(0)) < text.index("## ")
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2
    assert "pip install" in lines[0] and "aos demo" in lines[0]
    assert "pytest" in lines[1]


def test_readme_parallel_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[1]
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("10_000", "200"), str(README), "exec"), {"__name__": "readme"})  # on its own
    assert "'max': 199" in capsys.readouterr().out  # 200 cells ready at once: the last waits 199 tickets
