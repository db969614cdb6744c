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
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.string cimport memcpy, memcmp
from libc.stdint cimport uint32_t, uint8_t
from cpython.pyport cimport PY_SSIZE_T_MAX


cdef extern from "Python.h":
    void PyObject_GC_UnTrack(object)

from aos._core.encoder cimport KIND_NONE, kind_code, record_payload
from aos._core.hashing cimport digest_of2, aos_b3_hash2
from aos._core.posix cimport now_ns


__all__ = ["append", "scan", "chain_check", "length_check", "FRAME_HEAD", "CHAIN_SIZE", "MAX_RECORD"]

FRAME_HEAD = 8
CHAIN_SIZE = 32
MAX_RECORD = 1 << 30
cdef uint32_t C_MAX_RECORD = MAX_RECORD

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


cdef inline uint32_t get_u32(const unsigned char* p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline bytes chain_of(bytes prev, bytes payload):
    """BLAKE3(prev || payload)."""
    return digest_of2(prev, payload)


def append(bytearray buf, bytes prev, bytes payload):
    """Append the frame of ``payload`` to ``buf``; return its chain hash."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef Py_ssize_t at = PyByteArray_GET_SIZE(buf)
    cdef char* p
    if n > MAX_RECORD:
        raise ValueError(f"record of {n} bytes exceeds the {MAX_RECORD} byte limit")
    if PyBytes_GET_SIZE(prev) != 32:
        raise ValueError("the previous chain must be 32 bytes")
    chain = chain_of(prev, payload)
    PyByteArray_Resize(buf, at + 8 + n + 32)
    p = PyByteArray_AS_STRING(buf) + at
    put_u32(p, <uint32_t>n)
    put_u32(p + 4, crc32_le32(<uint32_t>n))
    memcpy(p + 8, PyBytes_AS_STRING(payload), n)
    memcpy(p + 8 + n, PyBytes_AS_STRING(<bytes>chain), 32)
    return chain


# scan() stops with one of these
cdef enum:
    C_SCAN_END = 0          # every byte was a good frame
    C_SCAN_SHORT_HEAD = 1   # fewer than 8 bytes left
    C_SCAN_BAD_LENGTH = 2   # the length fails its check (or is over MAX_RECORD)
    C_SCAN_PAST_END = 3     # the frame runs past the end of the data
    C_SCAN_BAD_CHAIN = 4    # the chain hash differs

SCAN_END = C_SCAN_END
SCAN_SHORT_HEAD = C_SCAN_SHORT_HEAD
SCAN_BAD_LENGTH = C_SCAN_BAD_LENGTH
SCAN_PAST_END = C_SCAN_PAST_END
SCAN_BAD_CHAIN = C_SCAN_BAD_CHAIN


cdef int check_frames(const unsigned char* base, Py_ssize_t size, Py_ssize_t* offset, uint8_t* chain,
                      Py_ssize_t limit, Py_ssize_t* count) noexcept nogil:
    """Check up to ``limit`` frames from ``offset[0]`` (lengths and chain links, no Python object).

    Moves ``offset[0]`` and ``chain`` past the good frames, counts them in
    ``count[0]`` and returns the ``SCAN_*`` code it stopped with.
    """
    cdef Py_ssize_t off = offset[0], end
    cdef uint32_t n
    cdef uint8_t h[32]
    cdef int stop = C_SCAN_END
    count[0] = 0
    while off < size and count[0] < limit:
        if size - off < 8:
            stop = C_SCAN_SHORT_HEAD
            break
        n = get_u32(base + off)
        if get_u32(base + off + 4) != crc32_le32(n) or n > C_MAX_RECORD:
            stop = C_SCAN_BAD_LENGTH
            break
        end = off + 8 + <Py_ssize_t>n + 32
        if end > size:
            stop = C_SCAN_PAST_END
            break
        aos_b3_hash2(chain, 32, base + off + 8, n, h)
        if memcmp(h, base + end - 32, 32) != 0:
            stop = C_SCAN_BAD_CHAIN
            break
        memcpy(chain, h, 32)
        count[0] += 1
        off = end
    offset[0] = off
    return stop


def chain_check(const unsigned char[::1] data, Py_ssize_t offset, bytes chain, Py_ssize_t limit):
    """Check up to ``limit`` frames from ``offset`` as :func:`scan` does, without the GIL: ``(count, stop,
    offset, chain)``, ``count`` the good frames.

    The journal's reader checks the next batch on another thread while the
    caller uses this one, then takes the batch with ``scan(..., checked=True)``.
    """
    cdef Py_ssize_t size = data.shape[0]
    cdef Py_ssize_t off = offset, count = 0
    cdef uint8_t c[32]
    cdef int stop
    cdef const unsigned char* base = &data[0] if size else NULL
    if PyBytes_GET_SIZE(chain) != 32:
        raise ValueError("the chain must be 32 bytes")
    memcpy(c, PyBytes_AS_STRING(chain), 32)
    with nogil:
        stop = check_frames(base, size, &off, c, limit, &count)
    return count, stop, off, PyBytes_FromStringAndSize(<char*>c, 32)


def scan(const unsigned char[::1] data, Py_ssize_t offset, bytes chain, Py_ssize_t limit=-1, bint checked=False):
    """Walk frames from ``offset``: ``(frames, stop, offset, chain)``.

    ``frames`` lists ``(offset, payload, chain)`` of every good frame (at most
    ``limit`` when it is >= 0); ``stop`` is one of the ``SCAN_*`` codes and
    ``offset`` where it stopped (the first byte not part of a good frame);
    ``chain`` is the chain hash of the last good frame. ``checked``: the
    ``limit`` frames from ``offset`` passed :func:`chain_check`, so their
    chain links are taken as written rather than hashed again.
    """
    cdef Py_ssize_t size = data.shape[0]
    cdef Py_ssize_t off = offset, end, count = limit, i
    cdef uint32_t n
    cdef uint8_t c[32]
    cdef list frames = []
    cdef int stop = C_SCAN_END
    cdef const unsigned char* base = &data[0] if size else NULL
    if PyBytes_GET_SIZE(chain) != 32:
        raise ValueError("the chain must be 32 bytes")
    if not checked:  # check first (the checks are check_frames' alone), then take the good frames
        memcpy(c, PyBytes_AS_STRING(chain), 32)
        with nogil:
            stop = check_frames(base, size, &off, c, limit if limit >= 0 else PY_SSIZE_T_MAX, &count)
        off = offset
    for i in range(count):
        if off >= size:
            break
        n = get_u32(base + off)
        end = off + 8 + <Py_ssize_t>n + 32
        chain = PyBytes_FromStringAndSize(<const char*>(base + end - 32), 32)
        frame = (off, PyBytes_FromStringAndSize(<const char*>(base + off + 8), n), chain)
        PyObject_GC_UnTrack(frame)  # an int and two bytes: no cycle, nothing for the collector to walk
        frames.append(frame)
        off = end
    return frames, stop, off, chain


cdef inline double monotonic() noexcept nogil:
    """``time.monotonic()`` (CLOCK_MONOTONIC), without a Python call."""
    return now_ns() * 1e-9


cdef class FrameWriter:
    """The append side of the journal's current segment, in C.

    It frames records into its buffer and keeps the chain, the record index
    and the segment offset; it counts commit points and says when the
    durability policy wants a flush. Writing the buffer to the file
    (:meth:`take`), syncing and rotating segments stay with
    :class:`aos.journal.Journal`, which owns the file. The commit loops
    append through :meth:`c_append` without a Python call.

    The buffer is C memory that keeps its capacity from one group to the
    next (doubling when it must grow), so a steady stream of groups
    allocates nothing; the chain is kept as 32 bytes of C memory.
    """

    def __init__(self, int64_t index, bytes chain, int64_t offset, int64_t segment_bytes, int64_t header_size,
                 str mode, int64_t group_commits, double group_ms):
        if PyBytes_GET_SIZE(chain) != 32:
            raise ValueError("the chain must be 32 bytes")
        if mode not in ("none", "group", "always"):
            raise ValueError(f"durability mode must be 'none', 'group' or 'always', got {mode!r}")
        memcpy(self._chain, PyBytes_AS_STRING(chain), 32)
        self.index = index
        self.offset = offset
        self.segment_bytes = segment_bytes
        self.header_size = header_size
        self.pending = 0
        self.last_flush = monotonic()
        self.mode = 0 if mode == "none" else 1 if mode == "group" else 2
        self.group_commits = group_commits
        self.group_ms = group_ms
        self.closed = False

    def __dealloc__(self):
        PyMem_Free(self._data)

    @property
    def chain(self):
        """The chain hash of the last record appended."""
        return PyBytes_FromStringAndSize(<char*>self._chain, 32)

    @property
    def buffered(self):
        """Bytes of framed records not yet taken (written to the segment file)."""
        return self._size

    cdef int _reserve(self, Py_ssize_t more) except -1:
        cdef Py_ssize_t cap = self._cap if self._cap else 65536
        cdef char* grown
        if self._size + more <= self._cap:
            return 0
        while cap < self._size + more:
            cap *= 2
        grown = <char*>PyMem_Realloc(self._data, cap)
        if grown == NULL:
            raise MemoryError()
        self._data = grown
        self._cap = cap
        return 0

    cdef int64_t c_append(self, bytes payload) except -2:
        """Frame ``payload`` into the buffer and return its index; -1 (nothing done) when the segment is full."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        cdef char* p
        cdef int64_t end = self.offset + 40 + n
        if self.closed:
            raise ValueError("journal is closed")
        if end > self.segment_bytes and self.offset > self.header_size:
            return -1
        if n > MAX_RECORD:
            raise ValueError(f"record of {n} bytes exceeds the {MAX_RECORD} byte limit")
        self._reserve(40 + n)
        p = self._data + self._size
        put_u32(p, <uint32_t>n)
        put_u32(p + 4, crc32_le32(<uint32_t>n))
        memcpy(p + 8, PyBytes_AS_STRING(payload), n)
        aos_b3_hash2(self._chain, 32, <const uint8_t*>PyBytes_AS_STRING(payload), n, <uint8_t*>(p + 8 + n))
        memcpy(self._chain, p + 8 + n, 32)
        self._size += 40 + n
        self.offset = end
        self.index += 1
        return self.index - 1

    cdef int c_commit_point(self) except -1:
        """Count a commit point; 1 when the durability policy wants the buffer written (and synced) now."""
        self.pending += 1
        if self.mode == 2 or self.pending >= self.group_commits:
            return 1
        return 1 if (monotonic() - self.last_flush) * 1000.0 >= self.group_ms else 0

    def append(self, bytes payload):
        """:meth:`c_append` from Python."""
        return self.c_append(payload)

    def append_record(self, record):
        """Write ``record`` (of a record class aos.records binds) with the C record writer and frame it: its
        index; -1 (nothing done) when the segment is full; -2 (nothing done) when a value of it needs the
        general encoder (``Journal.append`` then takes that path)."""
        payload = record_payload(record)
        if payload is None:
            return -2
        return self.c_append(<bytes>payload)

    def commit_point(self):
        """:meth:`c_commit_point` from Python."""
        return self.c_commit_point()

    def pending_bytes(self):
        """A copy of the framed records not yet written (the buffer keeps them until :meth:`clear`)."""
        return PyBytes_FromStringAndSize(self._data, self._size)

    def clear(self):
        """The buffered records were written: empty the buffer (its capacity kept, up to 4 MiB)."""
        self._size = 0
        if self._cap > 4 * 1024 * 1024:  # a burst grew it: give the memory back
            PyMem_Free(self._data)
            self._data = NULL
            self._cap = 0

    def take(self):
        """:meth:`pending_bytes`, then :meth:`clear`."""
        out = PyBytes_FromStringAndSize(self._data, self._size)
        self.clear()
        return out

    def flushed(self, double now):
        """The buffer was written out at ``now`` (``time.monotonic()``): reset the commit count."""
        if self._size:
            raise ValueError("the buffer must be written before it is flushed")
        self.pending = 0
        self.last_flush = now

    def new_segment(self, int64_t header_size):
        """The next frame starts a new segment, right after its header."""
        if self._size:
            raise ValueError("the buffer must be written before a new segment starts")
        self.offset = header_size


cdef bytes _STEP_HEAD = b"\x63key"  # the first key of a StepScheduled map (and of a few other kinds)


cdef class FrameCursor:
    """The records a replay expects next, compared with what it produces in C.

    The base of :class:`aos.replay.VerifyingSink`, which loads the batches
    of frames (``_load``) and reports a divergence (``append_payload``, the
    general path, called whenever the bytes differ or the journal ended).
    """

    def __init__(self):
        self._frames = []
        self._i = 0
        self._first = 0
        self._next = None
        self._scheduled = None
        self.records = 0

    cdef int c_expect(self, bytes payload) except -1:
        """Compare ``payload`` with the next record and move past it (the general path when they differ)."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        expected = self._next
        if expected is None or PyBytes_GET_SIZE(<bytes>expected) != n or \
                memcmp(PyBytes_AS_STRING(<bytes>expected), PyBytes_AS_STRING(payload), n) != 0:
            self.append_payload(payload)  # the journal's end (a world completing a step), or a divergence
            return 0
        cdef Py_ssize_t i = self._i
        self._i = i + 1
        self.records += 1
        if i + 1 < len(self._frames):
            self._next = (<tuple>self._frames[i + 1])[1]
        else:
            self._load()
        if n > 5 and memcmp(PyBytes_AS_STRING(payload) + 1, PyBytes_AS_STRING(_STEP_HEAD), 4) == 0:
            self._scheduled = payload  # remembered for the divergence report
        return 0

    cdef int c_next_code(self) noexcept:
        """The kind of the next record as :func:`aos._core.encoder.kind_code` gives it (``KIND_NONE`` at the
        end, or for bytes that are not a record)."""
        nxt = self._next
        if nxt is None:
            return KIND_NONE
        return kind_code(<bytes>nxt)
