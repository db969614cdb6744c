"""A content-addressed blob store in the world directory (``<world>/blobs``)."""

from __future__ import annotations

import re
from pathlib import Path

from aos import canonical
from aos.files import write_atomic

__all__ = ["BlobStore"]

_HEX = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    """Blobs named by the BLAKE3 of their bytes; writing the same bytes twice is a no-op."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        if not isinstance(digest, str) or not _HEX.match(digest):
            raise ValueError(f"blob hash must be 64 lowercase hex digits, got {digest!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"blob data must be bytes, got {type(data).__name__}")
        digest = canonical.digest(bytes(data)).hex()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, bytes(data))
        return digest

    def get(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyError(f"no blob {digest}") from None
        if canonical.digest(data).hex() != digest:
            raise ValueError(f"blob {digest} is corrupt (its bytes hash differently)")
        return data

    def __contains__(self, digest: str) -> bool:
        return self._path(digest).exists()
