"""Lanes: which lane of a fleet holds a cell.

A fleet splits its keyspace into ``lanes`` lanes, fixed when the fleet is
created. A keyed cell lives in the lane given by a stable hash of its key
(BLAKE3 of the key's canonical bytes, the first 8 bytes as a little-endian
integer, modulo the lane count): the same on every machine, Python build and
run. A non-keyed cell lives in the fleet's *home* lane. Each lane is a full
world whose records carry its ``lane_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aos import canonical
from aos.errors import ArgumentError

__all__ = ["Lane", "lane_of_key", "MAX_LANES", "CLIENT_SOURCE"]

MAX_LANES = 4096
#: The source of the events a fleet's client submits to a lane (sources below it are lane ids).
CLIENT_SOURCE = MAX_LANES


def lane_of_key(key: Any, lanes: int) -> int:
    """The lane of a keyed cell with (normalized) ``key`` in a fleet of ``lanes`` lanes."""
    if lanes == 1:
        return 0
    h = canonical.digest(canonical.encode(key, where="cell key"))
    return int.from_bytes(h[:8], "little") % lanes


@dataclass(frozen=True, slots=True)
class Lane:
    """One lane of a fleet: its id, the fleet's lane count and home lane (where non-keyed cells live)."""

    lane_id: int = 0
    lanes: int = 1
    home: int = 0

    def __post_init__(self) -> None:
        for name in ("lane_id", "lanes", "home"):
            v = getattr(self, name)
            if type(v) is not int:
                raise ArgumentError(f"Lane {name} must be an int, got {type(v).__name__}")
        if not 1 <= self.lanes <= MAX_LANES:
            raise ArgumentError(f"Lane lanes must be in 1..{MAX_LANES}, got {self.lanes}")
        if not 0 <= self.lane_id < self.lanes:
            raise ArgumentError(f"Lane lane_id must be in 0..{self.lanes - 1}, got {self.lane_id}")
        if not 0 <= self.home < self.lanes:
            raise ArgumentError(f"Lane home must be in 0..{self.lanes - 1}, got {self.home}")

    def of(self, key: Any) -> int:
        """The lane holding the cell with ``key`` (None: a non-keyed cell, the home lane)."""
        return self.home if key is None else lane_of_key(key, self.lanes)

    def holds(self, key: Any) -> bool:
        """Whether this lane holds the cell with ``key``."""
        return self.of(key) == self.lane_id

    def describe(self) -> dict[str, int]:
        return {"lane_id": self.lane_id, "lanes": self.lanes, "home": self.home}
