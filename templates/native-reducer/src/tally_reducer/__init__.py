"""A keyed running tally as a native aos reducer (built from ``_native.pyx``), and its Python twin.

Register it with :func:`register`, or by hand::

    m.native_reducer("tally/Tally@1", key="id", events=["tally/Add@1"], fn=tally_reducer.REDUCER,
                     user=every, code_id=tally_reducer.code_id(every))
    m.schema(tally_reducer.MILESTONE)
"""

from __future__ import annotations

import aos
from aos.manifest import ReducerSpec

from tally_reducer._native import CODE_ID, REDUCER
from tally_reducer.twin import MILESTONE, TallyError, python_tally

__all__ = ["CODE_ID", "MILESTONE", "REDUCER", "TallyError", "code_id", "python_tally", "register"]


def code_id(every: int) -> str:
    """The code identity of the native reducer with ``user=every``.

    aos puts ``code_id`` into the world's era but not the ``user`` value, so a
    parameter that changes what the reducer does is part of the code id:
    opening a world with another ``every`` is then an upgrade, as it must be.
    """
    return f"{CODE_ID}/every={every}"


def register(manifest: aos.Manifest, name: str = "tally/Tally@1", *, events: list[str] | tuple[str, ...] =
             ("tally/Add@1",), key: str | None = "id", every: int = 10, native: bool = True) -> ReducerSpec:
    """Add the tally reducer to ``manifest`` as ``name`` (the native one, or with ``native=False`` its
    Python twin) and declare :data:`MILESTONE`, the schema it emits. Returns the reducer's spec."""
    if type(every) is not int or every < 1:
        raise aos.ManifestError(f"reducer {name}: every must be a positive int, got {every!r}")
    if native:
        manifest.native_reducer(name, key=key, events=list(events), fn=REDUCER, user=every, code_id=code_id(every))
    else:
        manifest.reducer(name, key=key, events=list(events))(python_tally(every))
    manifest.schema(MILESTONE)
    return manifest.reducers[name]
