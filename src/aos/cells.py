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

__all__ = ["CellTable"]


class CellTable:
    """Cell ids, keys and committed states."""

    __slots__ = ("_ids", "specs", "keys", "states", "hashes", "live")

    def __init__(self) -> None:
        self._ids: dict[tuple[str, Any], int] = {}
        self.specs: list[ReducerSpec] = []
        self.keys: list[Any] = []
        self.states: list[bytes | None] = []
        self.hashes: list[bytes | None] = []
        self.live = 0

    def __len__(self) -> int:
        """Number of cells with a state."""
        return self.live

    def id_of(self, spec: ReducerSpec, key: Any) -> int:
        """The id of cell (spec, key), allocating one on first use."""
        k = (spec.name, key)
        cid = self._ids.get(k)
        if cid is None:
            cid = len(self.specs)
            self._ids[k] = cid
            self.specs.append(spec)
            self.keys.append(key)
            self.states.append(None)
            self.hashes.append(None)
        return cid

    def find(self, reducer: str, key: Any) -> int | None:
        return self._ids.get((reducer, key))

    def set(self, cid: int, state: bytes | None, state_hash: bytes | None) -> None:
        before = self.states[cid] is not None
        self.states[cid] = state
        self.hashes[cid] = state_hash
        self.live += (state is not None) - before

    def items(self) -> Iterator[tuple[ReducerSpec, Any, bytes, bytes]]:
        """Live cells as (spec, key, state bytes, state hash), in id order."""
        for cid, state in enumerate(self.states):
            if state is not None:
                yield self.specs[cid], self.keys[cid], state, self.hashes[cid]  # type: ignore[misc]

    def sorted_items(self) -> list[tuple[bytes, ReducerSpec, Any, bytes, bytes]]:
        """Live cells in canonical order: by the CBOR encoding of ``[reducer, key]``."""
        rows = [(canonical.encode([spec.name, key]), spec, key, state, h)
                for spec, key, state, h in self.items()]
        rows.sort(key=lambda r: r[0])
        return rows

    def snapshot_hash(self, rows: list[tuple[bytes, ReducerSpec, Any, bytes, bytes]] | None = None) -> bytes:
        """BLAKE3 over ``cbor([reducer, key]) || state_hash`` of every live cell, in canonical order."""
        h = blake3.blake3(b"aos.snapshot.v1")
        for name, _spec, _key, _state, state_hash in (self.sorted_items() if rows is None else rows):
            h.update(name)
            h.update(state_hash)
        return h.digest()
