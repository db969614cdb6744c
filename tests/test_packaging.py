"""What the installed package carries: one version, typing marker, license, and the native reducer headers."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import aos


def test_the_version_is_single_sourced() -> None:
    assert md.version("aos-kernel") == aos.__version__


def test_the_package_is_marked_typed() -> None:
    assert (Path(aos.__file__).parent / "py.typed").is_file()


def test_the_license_ships_with_the_distribution() -> None:
    dist = md.distribution("aos-kernel")
    licenses = [f for f in dist.files or () if Path(str(f)).name == "LICENSE"]
    assert licenses, "no LICENSE in the distribution's files"
    assert "Apache License" in licenses[0].read_text()
    assert dist.metadata["License"] == "Apache-2.0"
    assert "Typing :: Typed" in dist.metadata.get_all("Classifier")


def test_get_include_holds_the_native_reducer_abi() -> None:
    include = Path(aos.get_include())
    assert include.is_absolute()
    header = include / "aos_native.h"
    assert header.is_file()
    assert "aos_" in header.read_text()
    assert "static inline int aos_cbor_read_head(" in (include / "aos_cbor.h").read_text()  # the CBOR helpers
    assert (include.parent / "native.pxd").is_file()  # the Cython declarations, beside the core


def test_the_wheel_matrix_matches_the_python_classifiers() -> None:
    # The CPython versions cibuildwheel builds are those the package says it supports, and both
    # say the same as requires-python.
    import re
    import tomllib

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())
    builds = project["tool"]["cibuildwheel"]["build"]
    built = {m.group(1) for b in builds if (m := re.fullmatch(r"cp3(\d+)-\*", b))}
    threaded = {m.group(1) for b in builds if (m := re.fullmatch(r"cp3(\d+)t-\*", b))}
    classified = {m.group(1) for c in project["project"]["classifiers"]
                  if (m := re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c))}
    assert built == classified, (sorted(built), sorted(classified))
    assert threaded and threaded <= built
    lowest = min(int(v) for v in built)
    assert project["project"]["requires-python"] == f">=3.{lowest}"
    assert "Programming Language :: Python :: Free Threading :: 2 - Beta" in project["project"]["classifiers"]
