"""BLAKE3 digests computed in C (``hashing.pyx``)."""

__all__ = ["digest"]

def digest(data: bytes, more: bytes = b"") -> bytes:
    """The 32-byte BLAKE3 digest of ``data || more``."""
