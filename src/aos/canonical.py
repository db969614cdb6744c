"""Canonical values: deterministic CBOR (through cbor2) and BLAKE3 hashes.

The value model (docs/canonical.md):

* ``None``, ``bool``, ``int`` (any size), ``float``, ``str``, ``bytes``,
  ``list`` (tuples are accepted and encode as lists), ``dict`` with keys of
  type ``str``, ``int`` or ``bytes`` (not ``bool``).
* Floats: ``NaN`` is rejected (it has many encodings and is not equal to
  itself); ``-0.0`` is normalized to ``0.0``; infinities are allowed. Floats
  are written in the shortest IEEE 754 width that keeps their value.
* Encoding is cbor2's canonical mode: shortest integer and length heads,
  definite lengths, map keys sorted by their encoded bytes (shorter first,
  then bytewise, RFC 7049 §3.9).

``decode`` of bytes that must be canonical re-encodes what it read and raises
:class:`NonCanonicalError` unless the bytes come back identical.
"""

from __future__ import annotations

import math
import re
from typing import Any

import cbor2

from aos._core.decoder import UNHANDLED
from aos._core.decoder import decode as _fast_decode
from aos._core.encoder import encode as _fast_encode
from aos._core.hashing import digest as _c_digest
from aos.errors import NonCanonicalError, UnencodableValueError, brief, brief_path
from aos.typed import fields_of

__all__ = ["encode", "decode", "encode_trusted", "decode_trusted", "digest", "hash_value", "normalize",
           "HASH_SIZE", "INT64_MIN", "INT64_MAX", "int64_problem"]

HASH_SIZE = 32
_FLOAT_HEAD = re.compile(rb"[\xf9-\xfb]")
_KEY_TYPES = (str, int, bytes)
MAX_DEPTH = 400  # deepest container nesting in the model (cbor2 6 decodes no deeper)
# The integer fields of journal records (cell keys, costs, budgets, counters) are signed 64-bit
# (docs/canonical.md, "The integer model"); values carried as canonical bytes hold ints of any size.
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def int64_problem(value: int, low: int = INT64_MIN) -> str | None:
    """Why the int ``value`` cannot be a record field (``None``: it can), without printing a huge int."""
    if low <= value <= INT64_MAX:
        return None
    shown = str(value) if value.bit_length() <= 128 else f"an int of {value.bit_length()} bits"
    lo = "0" if low == 0 else "-2**63"
    return f"{shown} is outside the record range {lo}..2**63-1"


def digest(data: bytes) -> bytes:
    """BLAKE3 of ``data`` (32 bytes; in C, ``aos/_core/include/aos_blake3.h``)."""
    return _c_digest(data)


# An int beyond the 64-bit CBOR heads is a bignum: a tag around a byte string, one level deeper than
# the int itself, so at the depth limit it is a level too deep (cbor2 would not read it back).
_HEAD_MIN = -(1 << 64)
_HEAD_MAX = (1 << 64) - 1
_DEEP_BIGNUM = (f"an int beyond 64 bits at nesting level {MAX_DEPTH} (its bignum tag is one level deeper "
                "than the limit)")


def _find_problem(value: Any, path: str) -> tuple[str, str] | None:
    """Walk ``value``; return ``(path, reason)`` of the first problem."""
    try:
        _plain(value, 0)
    except _Outside as bad:
        return _path(path, bad.where), bad.reason
    return None


def _path(path: str, where: list[Any]) -> str:
    # Built only for an error: a repr of every key on the way would cost, and fail on huge ints.
    return path + "".join(f"[{brief(k, 60)}]" for k in reversed(where))


class _Outside(Exception):
    """A value outside the model: why, and the keys and indexes leading to it (innermost first)."""

    def __init__(self, reason: str, where: list[Any] | None = None) -> None:
        self.reason = reason
        self.where = where or []


_KEY_PROBLEM = "map key of type {} (keys must be str, int or bytes)"


def _plain(value: Any, depth: int) -> Any:
    """A copy of ``value`` made of the model's exact types, as its encoding holds it; raise :class:`_Outside`.

    Subclasses become their base type by the base type's own accessors
    (``dict.items``, ``str.__str__``, ...), never by methods a subclass
    overrides, so that what is encoded is what a reader decodes: a ``dict``
    subclass whose ``items`` or ``__len__`` lie cannot make a map's head
    disagree with its entries, and two keys that encode alike (a ``str``
    subclass beside the same text) are refused rather than written twice.
    ``-0.0`` becomes ``0.0``.
    """
    t = type(value)
    if value is None or t is str or t is bytes or t is bool:
        return value
    if t is int or (isinstance(value, int) and not isinstance(value, bool)):
        v = value if t is int else int.__int__(value)
        if depth >= MAX_DEPTH and not _HEAD_MIN <= v <= _HEAD_MAX:
            raise _Outside(_DEEP_BIGNUM)
        return v
    if isinstance(value, float):  # float subclasses too (e.g. numpy.float64)
        f = value if t is float else float.__float__(value)
        if f != f:
            raise _Outside("NaN is not allowed (it has no single canonical encoding)")
        return 0.0 if f == 0.0 else f
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes.__bytes__(value)
    if isinstance(value, cbor2.CBORSimpleValue):  # a tuple subclass in cbor2 5.x
        raise _Outside(f"type {t.__name__} is not in the value model")
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_DEPTH:
        raise _Outside(f"containers nested deeper than {MAX_DEPTH} levels (or a cycle)")
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in dict.items(value):
            tk = type(k)
            if tk is str or tk is bytes:
                key = k
            elif tk is bool or not isinstance(k, _KEY_TYPES):
                raise _Outside(_KEY_PROBLEM.format(tk.__name__), [k])
            else:
                try:
                    key = _plain(k, depth + 1)
                except _Outside as bad:
                    bad.where.append(k)
                    raise
                if key in out:
                    raise _Outside(f"two map keys encode alike (a {tk.__name__} equal to another key's plain "
                                   "value)", [k])
            try:
                out[key] = _plain(v, depth + 1)
            except _Outside as bad:
                bad.where.append(k)
                raise
        if len(out) != dict.__len__(value):  # a plain key equal to a subclass key seen earlier
            raise _Outside("two map keys encode alike (a subclass key equal to another key's plain value)")
        return out
    if isinstance(value, (list, tuple)):
        items = []
        for i, v in enumerate(list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value)):
            try:
                items.append(_plain(v, depth + 1))
            except _Outside as bad:
                bad.where.append(i)
                raise
        return items
    record = fields_of(value)  # a dataclass, msgspec Struct or pydantic model: the map of its fields by name
    if record is not None:
        return _plain(record, depth)
    raise _Outside(f"type {t.__name__} is not in the value model")


def _has_negative_zero(value: Any) -> bool:
    # A loop, not recursion: values nest up to MAX_DEPTH levels, which recursing through
    # generator expressions (two frames a level) turned into a RecursionError.
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float):
            if v == 0.0 and math.copysign(1.0, v) < 0:
                return True
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return False


def normalize(value: Any) -> Any:
    """A copy of ``value`` with ``-0.0`` replaced by ``0.0`` (else ``value`` itself)."""
    # Plain loops, one frame a level (comprehensions would add a frame each).
    if isinstance(value, float):
        return 0.0 if value == 0.0 else value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out[k] = normalize(v)
        return out
    if isinstance(value, (list, tuple)):
        items = []
        for v in value:
            items.append(normalize(v))
        return items
    return value


def encode(value: Any, where: str | None = None, path: str = "value") -> bytes:
    """Canonical CBOR bytes of ``value``.

    Raises :class:`UnencodableValueError` naming the offending ``path`` inside
    the value; ``where`` says what the value was (e.g. the event schema).
    """
    data = _fast_encode(value)  # the C writer; None: a value it leaves to the general path below
    if data is not None:
        return data
    try:
        plain = _plain(value, 0)  # exact types only, as the encoding holds them; NaN, -0.0, bad keys, depth
    except _Outside as bad:
        raise UnencodableValueError(bad.reason, _path(path, bad.where), where) from None
    except RecursionError:  # pragma: no cover - the depth limit comes first
        raise UnencodableValueError(f"containers nested deeper than {MAX_DEPTH} levels", path, where) from None
    data = _fast_encode(plain)  # None: a bignum, which cbor2 writes
    if data is None:
        try:
            data = cbor2.dumps(plain, canonical=True)
        except (cbor2.CBOREncodeError, TypeError, ValueError, RecursionError) as exc:  # pragma: no cover
            raise UnencodableValueError(str(exc), path, where) from exc
    return data


# Tags 25 and 256 (string references) and 28 and 29 (shared values) let cbor2 build a value far
# larger than its bytes: a hundred bytes of nested shared references stand for 2**60 leaves, which
# the model walk and the re-encoding below would take forever over. Every tag but the bignum tags
# is outside the model anyway, so bytes that may hold a reference tag (this over-matches, e.g. inside
# strings) are scanned exactly and refused before cbor2 decodes them.
_REFERENCE_TAG = re.compile(rb"[\xd8-\xdb]\x00{0,7}(?:[\x19\x1c\x1d]|\x01\x00)")
_ARG_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}


def _tag_outside_model(data: bytes) -> int | None:
    """The first tag other than 2 and 3 in ``data`` read as a sequence of CBOR heads (None: none found).

    Every data item's head is followed by its contents, so the heads can be read one after the
    other without tracking nesting; only string payloads are skipped. Malformed input ends the
    scan (cbor2 reports it).
    """
    i, n = 0, len(data)
    while i < n:
        head = data[i]
        major, info = head >> 5, head & 31
        i += 1
        if info < 24:
            arg = info
        elif info in _ARG_BYTES:
            size = _ARG_BYTES[info]
            if i + size > n:
                return None
            arg = int.from_bytes(data[i:i + size], "big")
            i += size
        elif info == 31:
            continue  # indefinite length or break: its contents are items too
        else:
            return None
        if major == 6 and arg not in (2, 3):
            return arg
        if major in (2, 3):
            i += arg
    return None


def decode(data: bytes, where: str = "data") -> Any:
    """Decode canonical CBOR; raise :class:`NonCanonicalError` unless canonical."""
    if type(data) is bytes:
        value = _fast_decode(data, True)  # the C reader: in the model and canonical, or UNHANDLED
        if value is not UNHANDLED:
            return value
    if _REFERENCE_TAG.search(data) is not None and (tag := _tag_outside_model(data)) is not None:
        raise NonCanonicalError(f"{where}: CBOR tag {tag} is outside the value model")
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types for malformed input
        raise NonCanonicalError(f"{where}: not valid CBOR ({type(exc).__name__}: {exc})") from None
    problem = _find_problem(value, "value")
    if problem is not None:
        raise NonCanonicalError(f"{where}: {brief_path(problem[0])}: {problem[1]}")
    try:
        again = cbor2.dumps(value, canonical=True)
    except Exception as exc:  # pragma: no cover - model walk catches these
        raise NonCanonicalError(f"{where}: cannot re-encode ({exc})") from None
    if again != data:
        raise NonCanonicalError(f"{where}: bytes are not the canonical encoding of their value")
    if _FLOAT_HEAD.search(data) and _has_negative_zero(value):
        raise NonCanonicalError(f"{where}: -0.0 must be written as 0.0")
    return value


def encode_trusted(value: Any) -> bytes:
    """Canonical CBOR of a value built by aos itself from checked parts (no model walk)."""
    data = _fast_encode(value)
    return data if data is not None else cbor2.dumps(value, canonical=True)


def decode_trusted(data: bytes) -> Any:
    """Decode bytes this process encoded itself (no canonical check)."""
    value = _fast_decode(data)
    return cbor2.loads(data) if value is UNHANDLED else value


def hash_value(value: Any) -> bytes:
    """BLAKE3 of the canonical encoding of ``value``."""
    return digest(encode(value))
