# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""Journal frames, written and checked in C (the layout is in :mod:`aos.journal`).

A frame is ``u32 length | u32 CRC-32 of the length | payload | chain`` with
``chain = BLAKE3(previous chain || payload)``. :func:`append` writes one frame
to the journal's buffer; :func:`scan` walks the frames of a segment's bytes,
checking every length check and chain link, and stops at the first frame that
fails (the caller decides between a torn tail and corruption).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.string cimport memcpy, memcmp
from libc.stdint cimport uint32_t, uint8_t

import blake3 as _blake3_module

cdef object _blake3 = _blake3_module.blake3

__all__ = ["append", "scan", "length_check", "FRAME_HEAD", "CHAIN_SIZE", "MAX_RECORD"]

FRAME_HEAD = 8
CHAIN_SIZE = 32
MAX_RECORD = 1 << 30

cdef uint32_t CRC_TABLE[256]


cdef void _crc_table() noexcept:
    cdef uint32_t c, n
    cdef int k
    for n in range(256):
        c = n
        for k in range(8):
            c = (<uint32_t>0xEDB88320 ^ (c >> 1)) if (c & 1) else (c >> 1)
        CRC_TABLE[n] = c


_crc_table()


cdef inline uint32_t crc32_le32(uint32_t v) noexcept nogil:
    """CRC-32 (the zlib polynomial) of the 4 little-endian bytes of ``v``."""
    cdef uint32_t c = <uint32_t>0xFFFFFFFF
    cdef int i
    for i in range(4):
        c = CRC_TABLE[(c ^ ((v >> (8 * i)) & 0xff)) & 0xff] ^ (c >> 8)
    return c ^ <uint32_t>0xFFFFFFFF


def length_check(uint32_t n):
    """The CRC-32 of a frame's little-endian length field."""
    return crc32_le32(n)


cdef inline void put_u32(char* p, uint32_t v) noexcept:
    p[0] = <char>(v & 0xff)
    p[1] = <char>((v >> 8) & 0xff)
    p[2] = <char>((v >> 16) & 0xff)
    p[3] = <char>((v >> 24) & 0xff)


cdef inline uint32_t get_u32(const unsigned char* p) noexcept:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline bytes chain_of(object hasher, bytes prev, bytes payload):
    """BLAKE3(prev || payload) with a reused hasher (no hasher object per frame)."""
    hasher.reset()
    hasher.update(prev)
    hasher.update(payload)
    return hasher.digest()


def append(bytearray buf, bytes prev, bytes payload, hasher=None):
    """Append the frame of ``payload`` to ``buf``; return its chain hash.

    ``hasher``: a ``blake3.blake3()`` object owned by the caller's thread,
    reused for every frame (one is made when it is None).
    """
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef Py_ssize_t at = PyByteArray_GET_SIZE(buf)
    cdef char* p
    if n > MAX_RECORD:
        raise ValueError(f"record of {n} bytes exceeds the {MAX_RECORD} byte limit")
    if PyBytes_GET_SIZE(prev) != 32:
        raise ValueError("the previous chain must be 32 bytes")
    chain = chain_of(_blake3() if hasher is None else hasher, prev, payload)
    PyByteArray_Resize(buf, at + 8 + n + 32)
    p = PyByteArray_AS_STRING(buf) + at
    put_u32(p, <uint32_t>n)
    put_u32(p + 4, crc32_le32(<uint32_t>n))
    memcpy(p + 8, PyBytes_AS_STRING(payload), n)
    memcpy(p + 8 + n, PyBytes_AS_STRING(<bytes>chain), 32)
    return chain


# scan() stops with one of these
SCAN_END = 0          # every byte was a good frame
SCAN_SHORT_HEAD = 1   # fewer than 8 bytes left
SCAN_BAD_LENGTH = 2   # the length fails its check (or is over MAX_RECORD)
SCAN_PAST_END = 3     # the frame runs past the end of the data
SCAN_BAD_CHAIN = 4    # the chain hash differs


def scan(const unsigned char[::1] data, Py_ssize_t offset, bytes chain, Py_ssize_t limit=-1):
    """Walk frames from ``offset``: ``(frames, stop, offset, chain)``.

    ``frames`` lists ``(offset, payload, chain)`` of every good frame (at most
    ``limit`` when it is >= 0); ``stop`` is one of the ``SCAN_*`` codes and
    ``offset`` where it stopped (the first byte not part of a good frame);
    ``chain`` is the chain hash of the last good frame.
    """
    cdef Py_ssize_t size = data.shape[0]
    cdef Py_ssize_t off = offset, end
    cdef uint32_t n
    cdef list frames = []
    cdef int stop = SCAN_END
    cdef const unsigned char* base = &data[0] if size else NULL
    hasher = _blake3()
    while off < size:
        if limit >= 0 and len(frames) >= limit:
            break
        if size - off < 8:
            stop = SCAN_SHORT_HEAD
            break
        n = get_u32(base + off)
        if get_u32(base + off + 4) != crc32_le32(n) or n > MAX_RECORD:
            stop = SCAN_BAD_LENGTH
            break
        end = off + 8 + <Py_ssize_t>n + 32
        if end > size:
            stop = SCAN_PAST_END
            break
        payload = PyBytes_FromStringAndSize(<const char*>(base + off + 8), n)
        h = chain_of(hasher, chain, payload)
        if memcmp(PyBytes_AS_STRING(<bytes>h), base + end - 32, 32) != 0:
            stop = SCAN_BAD_CHAIN
            break
        frames.append((off, payload, h))
        chain = h
        off = end
    return frames, stop, off, chain
