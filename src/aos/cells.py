"""Cells: the committed state of every (reducer, key).

States are held as their canonical CBOR bytes; a reducer always receives a
freshly decoded copy, so no step can reach into committed state, and a world
reopened from a snapshot behaves exactly like the one that wrote it. Cell ids
are small integers local to this process (the sequencer's names for cells);
they never reach the journal.

The bytes live in :class:`aos._core.cellstore.CellStore`, C arrays the step
loops read and write directly (docs/performance.md, "Memory"); this module
adds what the rest of the kernel asks of cells: pins, the snapshot hash,
cells in canonical order.
"""

from __future__ import annotations

from typing import Any, Iterator, cast

import blake3

from aos import canonical
from aos._core.cellstore import CellStore
from aos._core.hashing import digest
from aos.manifest import ReducerSpec

__all__ = ["CellTable", "hash_cells"]


def hash_cells(cells: Any) -> bytes:
    """The snapshot hash of ``[reducer, key, state hash]`` rows (any order): BLAKE3 over
    ``cbor([reducer, key]) || state_hash`` of each, in canonical cell order."""
    rows = sorted((canonical.encode([reducer, key]), sh) for reducer, key, sh in cells)
    h = blake3.blake3(b"aos.snapshot.v1")
    for cell, sh in rows:
        h.update(cell)
        h.update(sh)
    return h.digest()


class _View:
    """A read-only sequence over cell ids: ``view[cid]`` (states, specs or keys of the table)."""

    __slots__ = ("_get", "_table")

    def __init__(self, table: CellTable, get: Any) -> None:
        self._table = table
        self._get = get

    def __len__(self) -> int:
        return int(self._table.count)

    def __getitem__(self, cid: int) -> Any:
        return self._get(cid)

    def __iter__(self) -> Iterator[Any]:
        get = self._get
        return (get(cid) for cid in range(self._table.count))


class CellTable(CellStore):
    """Cell ids, keys, the reducer each runs and committed states (the store is C; see the module docstring).

    ``states``, ``specs`` and ``keys`` are read-only views by cell id;
    ``state_hash(cid)`` is the BLAKE3 of the state bytes, computed when asked.
    """

    __slots__ = ()

    @property
    def states(self) -> _View:
        return _View(self, self.state)

    @property
    def specs(self) -> _View:
        return _View(self, self.spec)

    @property
    def keys(self) -> _View:
        return _View(self, self.key)

    def state_of(self, reducer: str, key: Any) -> bytes | None:
        """The committed state bytes of cell (reducer, key), or None."""
        cid = self.find(reducer, key)
        return None if cid is None else self.state(cid)

    def set(self, cid: int, state: bytes | None, state_hash: bytes | None = None) -> None:
        """Cell ``cid`` holds ``state`` (None: it is deleted). ``state_hash``, its BLAKE3, is not kept."""
        self.set_state(cid, state)
        if state is None and self.pins and cid in self.pins:  # a deleted cell leaves its era: made again, it is new
            self.unpin(cid)

    def pin(self, cid: int, spec: ReducerSpec, era: bytes) -> None:
        """Cell ``cid`` runs ``spec``, the reducer of the earlier era ``era``."""
        self.set_spec(cid, spec)
        self.pins[cid] = era

    def unpin(self, cid: int) -> None:
        """Cell ``cid`` runs the world's current reducer from now on."""
        del self.pins[cid]
        self.set_spec(cid, self.current.get(self.spec(cid).name))

    def era_of(self, cid: int) -> bytes | None:
        """The earlier era cell ``cid`` is pinned to, or None (it runs the world's current code)."""
        return self.pins.get(cid) if self.pins else None

    def items(self) -> Iterator[tuple[ReducerSpec, Any, bytes, bytes]]:
        """Live cells as (spec, key, state bytes, state hash), in id order."""
        for _cid, spec, key, state in self.entries():
            yield spec, key, state, digest(state)

    def sorted_items(self) -> list[tuple[bytes, ReducerSpec, Any, bytes, bytes]]:
        """Live cells in canonical order: by the CBOR encoding of ``[reducer, key]``."""
        rows = [(canonical.encode([spec.name, key]), spec, key, state, h)
                for spec, key, state, h in self.items()]
        rows.sort(key=lambda r: r[0])
        return rows

    def canonical_order(self) -> list[tuple[bytes, int]]:
        """``(cbor([reducer, key]), id)`` of every live cell, in canonical order (by the first)."""
        encode = canonical.encode
        order = [(encode([spec.name, key]), cid) for cid, spec, key in self.live_cells()]
        order.sort()
        return order

    def snapshot_hash(self, rows: list[tuple[bytes, ReducerSpec, Any, bytes, bytes]] | None = None) -> bytes:
        """BLAKE3 over ``cbor([reducer, key]) || state_hash`` of every live cell, in canonical order."""
        if rows is None:
            # (without building sorted_items' rows: this runs at replay's end and when asked). Each part is
            # cbor([reducer, key]) || state hash; CBOR items are prefix-free and no two cells share a
            # [reducer, key], so sorting the joined bytes sorts by cell, and hashing them in turn hashes the pairs.
            # The store builds, sorts and hashes them in C (hash_parts gives the same parts as bytes objects).
            return self.snapshot_digest(b"aos.snapshot.v1")
        h = blake3.blake3(b"aos.snapshot.v1")
        for name, _spec, _key, _state, state_hash in rows:
            h.update(name)
            h.update(state_hash)
        return h.digest()

    def snapshot_parts(self) -> tuple[dict[bytes, bytes], list[list[Any]], bytes]:
        """What a snapshot holds of the cells: ``({state hash: state}, [[reducer, key, state hash]] in
        canonical order, snapshot hash)``, built cell by cell (no row of all of a cell's parts is kept)."""
        h = blake3.blake3(b"aos.snapshot.v1")
        states: dict[bytes, bytes] = {}
        rows: list[list[Any]] = []
        for name, cid in self.canonical_order():
            state = cast(bytes, self.state(cid))  # (canonical_order lists the cells that hold a state)
            state_hash = digest(state)
            h.update(name)
            h.update(state_hash)
            states[state_hash] = state
            rows.append([self.spec(cid).name, self.key(cid), state_hash])
        return states, rows, h.digest()
