"""aos's BLAKE3 in C (aos/_core/include/aos_blake3.h) against the blake3 package."""

from __future__ import annotations

import os

import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from aos._core.hashing import digest

# around the block (64), chunk (1024) and subtree (2^k chunks) boundaries
EDGES = sorted({n + d for n in (0, 64, 1024, 2048, 3072, 4096, 8192, 16384, 1 << 20) for d in (-1, 0, 1) if n + d >= 0})


def test_every_length_around_the_boundaries_matches() -> None:
    for n in [*range(0, 200), *EDGES]:
        data = os.urandom(n)
        assert digest(data) == blake3.blake3(data).digest(), n


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=5000), st.binary(max_size=5000))
def test_a_digest_of_two_pieces_is_the_digest_of_their_concatenation(a: bytes, b: bytes) -> None:
    assert digest(a, b) == blake3.blake3(a + b).digest()


def test_a_changed_byte_changes_the_digest() -> None:
    data = bytearray(os.urandom(3000))
    before = digest(bytes(data))
    data[2047] ^= 1
    assert digest(bytes(data)) != before
