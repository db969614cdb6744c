"""Receipts: what an adapter reports back about an effect, authenticated.

A receipt names the intent it settles, a status (``"ok"`` or ``"error"``), a
payload (any canonical value) and the actual cost. Its MAC is BLAKE3 keyed
with the world's secret (``<world>/secret.key``, never journaled) over the
canonical ``[intent_hash, status, payload, cost]``; a receipt whose MAC does
not verify is refused (``ReceiptAuthError``) and changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from aos import canonical
from aos.canonical import INT64_MAX
from aos.errors import ReceiptAuthError, ReceiptError, brief
from aos.files import write_atomic

__all__ = ["Receipt", "ReceiptSigner", "STATUSES", "load_secret", "create_secret", "SECRET_FILE"]

STATUSES = ("ok", "error")
SECRET_FILE = "secret.key"


@dataclass(frozen=True, slots=True)
class Receipt:
    """A receipt for the intent ``intent_hash``."""

    intent_hash: bytes
    status: str
    payload: bytes  # canonical CBOR
    cost: int
    mac: bytes

    @property
    def value(self) -> Any:
        """The payload, decoded."""
        return canonical.decode_trusted(self.payload)


def _mac_input(intent_hash: bytes, status: str, payload: bytes, cost: int) -> bytes:
    # canonical CBOR of the 4-element array, built around the already canonical payload
    return (b"\x84" + canonical.encode_trusted(intent_hash) + canonical.encode_trusted(status) + payload
            + canonical.encode_trusted(cost))


class ReceiptSigner:
    """Makes and checks receipt MACs with one world's secret."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("a world secret is 32 bytes")
        self._key = secret

    def mac(self, intent_hash: bytes, status: str, payload: bytes, cost: int) -> bytes:
        return blake3.blake3(_mac_input(intent_hash, status, payload, cost), key=self._key).digest()

    def make(self, intent_hash: bytes, status: str = "ok", payload: Any = None, cost: int = 0) -> Receipt:
        """A signed receipt (``payload`` must be in the value model).

        Raises :class:`ReceiptError` for a malformed intent hash, status or
        cost (an int from 0 to 2**63-1), :class:`UnencodableValueError` for a
        payload outside the value model.
        """
        if type(intent_hash) is not bytes or len(intent_hash) != 32:
            raise ReceiptError("intent_hash must be the 32-byte hash ctx.effect returned")
        if not isinstance(status, str) or status not in STATUSES:
            raise ReceiptError(f"receipt status must be one of {STATUSES}, got {brief(status)}")
        status = str.__str__(status)
        if type(cost) is not int or cost < 0 or cost > INT64_MAX:
            raise ReceiptError(f"receipt cost must be an int from 0 to 2**63-1 (costs are journaled as signed "
                               f"64-bit ints), got {brief(cost)}")
        data = canonical.encode(payload, where="receipt payload", path="payload")
        return Receipt(intent_hash, status, data, cost, self.mac(intent_hash, status, data, cost))

    def verify(self, r: Receipt) -> None:
        """Raise ReceiptAuthError unless ``r`` is well formed and its MAC verifies."""
        if not isinstance(r, Receipt):
            raise ReceiptAuthError(f"expected an aos Receipt, got {type(r).__name__}")
        if (type(r.intent_hash) is not bytes or len(r.intent_hash) != 32 or type(r.status) is not str
                or r.status not in STATUSES or type(r.payload) is not bytes or type(r.cost) is not int
                or not 0 <= r.cost <= INT64_MAX or type(r.mac) is not bytes):
            raise ReceiptAuthError("malformed receipt")
        if not _compare(self.mac(r.intent_hash, r.status, r.payload, r.cost), r.mac):
            raise ReceiptAuthError(f"receipt for intent {r.intent_hash.hex()} fails its MAC: "
                                   "forged, altered or signed by another world")




def _compare(a: bytes, b: bytes) -> bool:
    import hmac

    return hmac.compare_digest(a, b)


def create_secret(world: Path) -> None:
    """Create the world's receipt secret (mode 0600)."""
    path = world / SECRET_FILE
    write_atomic(path, os.urandom(32))
    os.chmod(path, 0o600)


def load_secret(world: Path) -> bytes | None:
    """The world's receipt secret, or None when it cannot be read."""
    try:
        data = (world / SECRET_FILE).read_bytes()
    except OSError:
        return None
    return data if len(data) == 32 else None
