"""Every code block of README.md and docs/*.md runs as written.

* Each ```python block runs on its own (a fresh namespace, in an empty
  directory), with a few big loop counts shrunk (SHRINK).
* Each ``$ aos ...`` command shown in a block runs against the world the
  README names (``aos demo shop.world --orders 100``); the lines printed
  under it must match what the command prints, where ``…`` in a documented
  line stands for any text. Commands whose output depends on timing
  (``metrics``) are matched by their field names only; ``tail -f`` by the
  records it prints before following (the rest came from another process).
* Each ```sql block of docs/cli.md runs against ``aos export`` of that world.

A block is left out only when the line before it is a visible comment
``<!-- docs-test: skip: REASON -->``. The commands of a block marked
``<!-- docs-test: world: damaged ... -->`` run against the damaged world that
docs/cli.md describes instead (the demo with 2,000 orders, its journal segment
cut to 5,000,000 bytes); there an exit status other than 0 is expected, and
what the command writes to stderr counts as printed. The blocks marked
``<!-- docs-test: example: NAME ... -->`` are one worked example: they run in
order, in one directory (a python block whose first line is ``# FILE.py`` is
written to that file, for the others to import and the commands to name as
``FILE:attribute``), their ``$ aos`` lines against the world the example
makes; ``aos shadow`` may exit 1 (something differs), as documented.

Run ``python tests/test_docs.py`` to print what each ``$ aos`` command
prints now (to update the docs after a change).
"""

from __future__ import annotations

import re
import shlex
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^(?:<!-- docs-test: (?P<marker>[^\n]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```",
                   re.S | re.M)
SHRINK = {"range(10_000)": "range(200)"}  # the README's parallel example: the same code, fewer events
TIMED = {"metrics"}  # output that depends on timing: field names only


def blocks() -> Iterator[tuple[str, str, str, str | None]]:
    """(where, language, body, marker) of every fenced block of the docs."""
    for doc in DOCS:
        text = doc.read_text()
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start("lang")) + 1
            yield f"{doc.relative_to(ROOT)}:{line}", m.group("lang"), m.group("body"), m.group("marker")


def python_blocks() -> list[Any]:
    out = []
    for where, lang, body, marker in blocks():
        if lang == "python" and not (marker and marker.startswith("example: ")):
            marks = [pytest.mark.skip(reason=marker)] if marker and marker.startswith("skip") else []
            out.append(pytest.param(where, body, id=where, marks=marks))
    return out


def commands() -> list[tuple[str, str, list[str], str]]:
    """(where, command line, documented output lines, world) of every ``$ aos`` line of the docs."""
    out = []
    for where, _lang, body, marker in blocks():
        if marker and (marker.startswith("skip") or marker.startswith("example: ")):
            continue
        world = "damaged" if marker and marker.startswith("world: damaged") else "shop"
        current: list[Any] | None = None
        for line in body.splitlines():
            if line.startswith("$ "):
                current = None
                if line.startswith("$ aos "):
                    current = [where, line[2:], [], world]
                    out.append(current)
            elif current is not None:
                current[2].append(line)
    return [tuple(c) for c in out]  # type: ignore[misc]


def test_skip_markers_are_few_and_say_why() -> None:
    markers = [(where, marker) for where, _lang, _body, marker in blocks() if marker]
    assert all(re.fullmatch(r"(skip|world: damaged) \S.{10,}|skip: \S.{10,}|example: \S+ \S.{10,}", m)
               for _w, m in markers), markers
    assert len([m for _w, m in markers if m.startswith("skip")]) <= 3, markers


def test_every_python_block_is_found() -> None:
    found = {where.split(":")[0] for where, lang, _b, _m in blocks() if lang == "python"}
    assert {"README.md", "docs/effects.md", "docs/parallel.md"} <= found


@pytest.mark.parametrize("where, code", python_blocks())
def test_python_block_runs_on_its_own(where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    for old, new in SHRINK.items():
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    # (dont_inherit: a block runs as its own file would, without this module's `from __future__ import annotations`)
    exec(compile(code, where, "exec", dont_inherit=True), {"__name__": "docs_block"})  # noqa: S102
    printed = capsys.readouterr().out
    for comment in re.findall(r"print\(.*\)\s+# ([{\[].*)$", code, re.M):
        if "..." not in comment:  # a printed value shown in full in a comment: it is what the line prints
            assert comment in printed, (comment, printed)


# ------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the world the README's command-line section uses."""
    from aos.demo import run_demo

    path = tmp_path_factory.mktemp("docs")
    run_demo(path / "shop.world", orders=100)
    return path


@pytest.fixture(scope="module")
def damaged_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The damaged world of docs/cli.md: the demo with 2,000 orders, its segment cut to 5,000,000 bytes."""
    from aos.demo import run_demo

    path = tmp_path_factory.mktemp("damaged")
    run_demo(path / "shop.world", orders=2000)
    (seg,) = (path / "shop.world" / "journal").glob("*.seg")
    with open(seg, "r+b") as f:
        f.truncate(5_000_000)
    return path


def run_aos(args: list[str], stderr: bool = False) -> tuple[int, str]:
    from aos.cli import cli
    from aos.errors import AosError

    result = CliRunner().invoke(cli, args)
    exc = result.exception
    if stderr and isinstance(exc, (AosError, OSError, ValueError)):
        return 1, result.output + f"error: {exc}\n"  # what aos.cli.main prints for it
    if exc is not None and not isinstance(exc, SystemExit):
        raise exc
    return result.exit_code, result.output if stderr else result.stdout


def matches(documented: str, actual: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in documented.rstrip().split("…"))
    return re.fullmatch(pattern, actual.rstrip()) is not None


def check_output(where: str, line: str, documented: list[str], actual: list[str]) -> None:
    name = shlex.split(line)[1]
    if name in TIMED:
        def labels(lines: list[str]) -> list[str]:
            return [re.split(r"\s{2,}", x, maxsplit=1)[0] for x in lines]

        assert labels(actual) == labels(documented), f"{where}: {line}"
        return
    assert len(actual) == len(documented), f"{where}: {line}\nprints:\n" + "\n".join(actual)
    for doc, got in zip(documented, actual, strict=True):
        assert matches(doc, got), f"{where}: {line}\ndocumented: {doc}\nprints:     {got}"


@pytest.mark.parametrize("where, line, documented, world", commands(), ids=[c[1] for c in commands()])
def test_aos_command_in_the_docs_runs_and_prints_what_they_show(where: str, line: str, documented: list[str],
                                                                world: str, request: pytest.FixtureRequest,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if "--png" in line:
        pytest.importorskip("matplotlib")
    if world == "damaged":
        monkeypatch.chdir(request.getfixturevalue("damaged_dir"))
        _code, out = run_aos(shlex.split(line)[1:], stderr=True)  # fsck exits 1 on damage; errors go to stderr
        check_output(where, line, documented, out.splitlines())
        return
    monkeypatch.chdir(request.getfixturevalue("docs_dir"))
    args = shlex.split(line)[1:]
    follow = "-f" in args or "--follow" in args
    if follow:
        args += ["--timeout", "0.2"]
        documented = documented[:next(i for i, x in enumerate(documented) if x.startswith("following "))]
    code, out = run_aos(args)
    assert code == 0, f"{where}: {line}\n{out}"
    check_output(where, line, documented, out.splitlines())


def test_the_readme_commands_cover_every_command() -> None:
    shown = {shlex.split(line)[1] for _w, line, _d, _world in commands()}
    assert {"info", "tail", "state", "replay", "metrics", "why", "fsck", "salvage"} <= shown


def examples() -> dict[str, list[tuple[str, str, str]]]:
    """The worked examples: name -> their blocks (where, language, body), in order."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for where, lang, body, marker in blocks():
        if marker and marker.startswith("example: "):
            out.setdefault(marker.split()[1], []).append((where, lang, body))
    return out


@pytest.mark.parametrize("name", sorted(examples()))
def test_worked_example_runs_in_order_and_prints_what_it_shows(name: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    modules: list[str] = []
    try:
        for where, lang, body in examples()[name]:
            first = body.split("\n", 1)[0]
            if lang == "python" and re.fullmatch(r"# \w+\.py", first):
                (tmp_path / first[2:]).write_text(body)
                modules.append(first[2:-3])
                sys.modules.pop(modules[-1], None)
                continue
            if lang == "python":
                capsys.readouterr()
                exec(compile(body, where, "exec"), {"__name__": "docs_block"})  # noqa: S102 - the docs' own code
                printed = capsys.readouterr().out
                for comment in re.findall(r"print\(.*\)\s+# (.*)$", body, re.M):
                    assert comment in printed, (where, comment, printed)
                continue
            for _w, line, documented, _world in _commands_of(where, body):
                args = shlex.split(line)[1:]
                code, out = run_aos(args)
                assert code == 0 or (code == 1 and args[0] == "shadow"), f"{where}: {line}\n{out}"
                check_output(where, line, documented, out.splitlines())
    finally:
        for module in modules:
            sys.modules.pop(module, None)


def _commands_of(where: str, body: str) -> list[tuple[str, str, list[str], str]]:
    out: list[Any] = []
    for line in body.splitlines():
        if line.startswith("$ aos "):
            out.append([where, line[2:], [], "example"])
        elif out:
            out[-1][2].append(line)
    return [tuple(c) for c in out]  # type: ignore[misc]


def test_sql_blocks_run_on_an_export(docs_dir: Path, tmp_path: Path) -> None:
    from aos.export import export_sqlite

    export_sqlite(docs_dir / "shop.world", tmp_path / "shop.db")
    db = sqlite3.connect(tmp_path / "shop.db")
    queries = [body for _w, lang, body, _m in blocks() if lang == "sql"]
    assert len(queries) >= 2
    for query in queries:
        assert db.execute(query).fetchall()


def test_the_demo_figures_in_the_readme() -> None:
    """The README's intro says how many events and steps the demo's default run has."""
    from aos.demo import demo_inputs, run_demo

    text = (ROOT / "README.md").read_text()
    m = re.search(r"([\d,]+) admitted events\s+and ([\d,]+) steps", text)
    assert m is not None
    events, steps = (int(g.replace(",", "")) for g in m.groups())
    assert events == len(demo_inputs(3000))
    with tempfile.TemporaryDirectory() as tmp:
        assert run_demo(Path(tmp) / "d.world", durability="none").steps == steps


if __name__ == "__main__":  # print what each documented command prints now
    import os

    from aos.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        run_demo(Path(tmp) / "shop.world", orders=100)
        os.chdir(tmp)
        for where, line, _documented, world in commands():
            if world != "shop":
                continue
            print(f"# {where}\n$ {line}")
            print(run_aos([a for a in shlex.split(line)[1:] if a not in ("-f", "--follow")])[1], end="")
