"""Cells: the committed state of every (reducer, key).

States are held as their canonical CBOR bytes with their BLAKE3 hash; a
reducer always receives a freshly decoded copy, so no step can reach into
committed state, and a world reopened from a snapshot behaves exactly like
the one that wrote it. Cell ids are small integers local to this process
(the sequencer's names for cells); they never reach the journal.
"""

from __future__ import annotations

from typing import Any, Iterator

import blake3

from aos import canonical
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


class CellTable:
    """Cell ids, keys and committed states.

    Kept compact for worlds of millions of cells: ids are found through one
    dict per reducer keyed by the cell key, and state hashes live in one
    bytearray (32 bytes per cell id) rather than as separate objects.
    """

    __slots__ = ("ids", "specs", "keys", "states", "hashes", "live", "pins", "current")

    def __init__(self) -> None:
        self.ids: dict[str, dict[Any, int]] = {}  # reducer name -> {cell key: cell id}
        self.specs: list[ReducerSpec] = []
        self.keys: list[Any] = []
        self.states: list[bytes | None] = []
        self.hashes = bytearray()
        self.live = 0
        # cell id -> the era whose code the cell runs, for cells pinned to an earlier era than the
        # world's (docs/upgrades.md, "Pinned cells"); their ``specs`` entry is that era's reducer
        self.pins: dict[int, bytes] = {}
        self.current: Any = None  # the world's manifest: the reducer a cell takes when its pin ends

    def __len__(self) -> int:
        """Number of cells with a state."""
        return self.live

    def id_of(self, spec: ReducerSpec, key: Any) -> int:
        """The id of cell (spec, key), allocating one on first use."""
        ids = self.ids.get(spec.name)
        if ids is None:
            ids = self.ids[spec.name] = {}
        cid = ids.get(key)
        if cid is None:
            cid = len(self.specs)
            ids[key] = cid
            self.specs.append(spec)
            self.keys.append(key)
            self.states.append(None)
            self.hashes += bytes(32)
        return cid

    def find(self, reducer: str, key: Any) -> int | None:
        ids = self.ids.get(reducer)
        return None if ids is None else ids.get(key)

    def state_of(self, reducer: str, key: Any) -> bytes | None:
        """The committed state bytes of cell (reducer, key), or None."""
        cid = self.find(reducer, key)
        return None if cid is None else self.states[cid]

    def set(self, cid: int, state: bytes | None, state_hash: bytes | None) -> None:
        before = self.states[cid] is not None
        self.states[cid] = state
        if state_hash is not None:
            self.hashes[cid * 32:cid * 32 + 32] = state_hash
        elif self.pins and cid in self.pins:  # a deleted cell leaves its era: made again, it is a new cell
            self.unpin(cid)
        self.live += (state is not None) - before

    def pin(self, cid: int, spec: ReducerSpec, era: bytes) -> None:
        """Cell ``cid`` runs ``spec``, the reducer of the earlier era ``era``."""
        self.specs[cid] = spec
        self.pins[cid] = era

    def unpin(self, cid: int) -> None:
        """Cell ``cid`` runs the world's current reducer from now on."""
        del self.pins[cid]
        self.specs[cid] = self.current.get(self.specs[cid].name)

    def era_of(self, cid: int) -> bytes | None:
        """The earlier era cell ``cid`` is pinned to, or None (it runs the world's current code)."""
        return self.pins.get(cid) if self.pins else None

    def items(self) -> Iterator[tuple[ReducerSpec, Any, bytes, bytes]]:
        """Live cells as (spec, key, state bytes, state hash), in id order."""
        hashes = self.hashes
        for cid, state in enumerate(self.states):
            if state is not None:
                yield self.specs[cid], self.keys[cid], state, bytes(hashes[cid * 32:cid * 32 + 32])

    def sorted_items(self) -> list[tuple[bytes, ReducerSpec, Any, bytes, bytes]]:
        """Live cells in canonical order: by the CBOR encoding of ``[reducer, key]``."""
        rows = [(canonical.encode([spec.name, key]), spec, key, state, h)
                for spec, key, state, h in self.items()]
        rows.sort(key=lambda r: r[0])
        return rows

    def snapshot_hash(self, rows: list[tuple[bytes, ReducerSpec, Any, bytes, bytes]] | None = None) -> bytes:
        """BLAKE3 over ``cbor([reducer, key]) || state_hash`` of every live cell, in canonical order."""
        if rows is None:
            # (sorted_items without building its rows: this runs at every snapshot and replay's end)
            hashes, specs, keys, encode = self.hashes, self.specs, self.keys, canonical.encode
            pairs = sorted((encode([specs[cid].name, keys[cid]]), hashes[cid * 32:cid * 32 + 32])
                           for cid, state in enumerate(self.states) if state is not None)
        else:
            pairs = [(name, state_hash) for name, _spec, _key, _state, state_hash in rows]
        h = blake3.blake3(b"aos.snapshot.v1")
        for name, state_hash in pairs:
            h.update(name)
            h.update(state_hash)
        return h.digest()
