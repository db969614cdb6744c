"""The per-step deterministic random number generator.

Seed = BLAKE3(canonical CBOR of ``[event_id, reducer, key]``) (DESIGN §2.3).
The stream is the BLAKE3 extendable output keyed by the seed, read in order,
so the same step draws the same numbers on every machine, Python version and
worker count. Native reducers receive the same 32-byte seed.
"""

from __future__ import annotations

from typing import Any, MutableSequence, Sequence, TypeVar

import blake3

from aos import canonical
from aos._core.encoder import encode as _fast_encode
from aos._core.hashing import digest as _digest  # BLAKE3 in C

__all__ = ["Rng", "step_seed"]

T = TypeVar("T")
_BLOCK = 256


def step_seed(event_id: int, reducer: str, key: Any) -> bytes:
    """The 32-byte seed of the step with ticket ``event_id`` on cell (reducer, key).

    ``key`` is a cell key that passed admission (str, int, bytes or None).
    """
    data = _fast_encode((event_id, reducer, key))  # the C writer (None: a key beyond 64 bits)
    return _digest(canonical.encode_trusted([event_id, reducer, key]) if data is None else data)


class Rng:
    """A deterministic generator over a 32-byte seed."""

    __slots__ = ("seed", "_xof", "_buf", "_pos", "_offset")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
        self.seed = seed
        self._xof = blake3.blake3(b"aos.rng", key=seed)
        self._buf = b""
        self._pos = 0
        self._offset = 0

    def bytes(self, n: int) -> bytes:
        """The next ``n`` bytes of the stream."""
        if n < 0:
            raise ValueError("n must be >= 0")
        out = bytearray()
        while n > 0:
            if self._pos >= len(self._buf):
                self._buf = self._xof.digest(length=_BLOCK, seek=self._offset)
                self._offset += _BLOCK
                self._pos = 0
            take = min(n, len(self._buf) - self._pos)
            out += self._buf[self._pos:self._pos + take]
            self._pos += take
            n -= take
        return bytes(out)

    def u64(self) -> int:
        """A uniform integer in [0, 2**64)."""
        return int.from_bytes(self.bytes(8), "little")

    def random(self) -> float:
        """A uniform float in [0.0, 1.0) with 53 random bits."""
        return (self.u64() >> 11) * (1.0 / (1 << 53))

    def randbelow(self, n: int) -> int:
        """A uniform integer in [0, n) (rejection sampling, no modulo bias)."""
        if n <= 0:
            raise ValueError("n must be > 0")
        bits = n.bit_length()
        nbytes = (bits + 7) // 8
        mask = (1 << bits) - 1
        while True:
            r = int.from_bytes(self.bytes(nbytes), "little") & mask
            if r < n:
                return r

    def randint(self, a: int, b: int) -> int:
        """A uniform integer in [a, b], both ends included."""
        if b < a:
            raise ValueError(f"empty range [{a}, {b}]")
        return a + self.randbelow(b - a + 1)

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()

    def choice(self, seq: Sequence[T]) -> T:
        if not seq:
            raise IndexError("choice from an empty sequence")
        return seq[self.randbelow(len(seq))]

    def shuffle(self, seq: MutableSequence[Any]) -> None:
        """Shuffle in place (Fisher-Yates)."""
        for i in range(len(seq) - 1, 0, -1):
            j = self.randbelow(i + 1)
            seq[i], seq[j] = seq[j], seq[i]
