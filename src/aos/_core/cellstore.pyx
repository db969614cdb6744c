# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""The cell store: every cell's key, reducer and committed state bytes in C arrays.

A world of millions of cells holds, per cell, what it needs and no Python
object: its state's bytes packed in one arena (an offset and a length), its
key unboxed (an int key's value, or a str or bytes key's bytes in a keys
arena), the reducer it runs as a 16-bit index into a short list of specs,
and one 32-bit slot in an open-addressing table from (reducer name, key)
to the cell id. State hashes are not kept: they are the BLAKE3 of the
state bytes, computed when a snapshot needs them.

Cell ids are dense from 0 and never reused (the sequencer's arrays are
indexed by them). A state written over a shorter or equal one takes its
place; a longer one goes to the arena's end and the old bytes become
garbage, squeezed out (in place, in offset order) when the arena is full
and a quarter of it is garbage. States reach callers as new ``bytes``.

The step loops call the ``c_*`` methods (``cellstore.pxd``); Python code
calls the ``def`` methods, which check their arguments. One thread writes
(the one committing, or one admitting through the commit loop's gate);
worker threads of the threads executor read states meanwhile
(:meth:`state`): on a free-threaded build, whatever moves or grows the
arrays and :meth:`state` hold the store's critical section (nothing on a
GIL build).
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_NoMemory
from cpython.list cimport PyList_GET_ITEM
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_Check, PyLong_FromLongLong
from cpython.bool cimport PyBool_Check
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memmove

from aos._core.hashing cimport digest_of
from aos._core.encoder cimport encode

import os

from aos.errors import InvalidKeyError, brief

__all__ = ["CellStore", "KEY_NONE", "KEY_INT", "KEY_STR", "KEY_BYTES"]

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL

cdef enum:
    KIND_NONE = 0   # no key: the one cell of an unkeyed reducer
    KIND_INT = 1    # an int of the signed 64-bit range, in ``word``
    KIND_STR = 2    # a str: its UTF-8 in the keys arena at ``word``
    KIND_BYTES = 3  # bytes: in the keys arena at ``word``

KEY_NONE, KEY_INT, KEY_STR, KEY_BYTES = KIND_NONE, KIND_INT, KIND_STR, KIND_BYTES

cdef int64_t MAX_SPECS = 65535
cdef int64_t MAX_CELLS = 0xFFFFFFFE  # table slots hold id + 1 in 32 bits
cdef int64_t MIN_ARENA = 1 << 16

# The table's hash is seeded per process, so which keys collide cannot be chosen from outside;
# cell ids never depend on it (they are given in order of first use).
cdef uint64_t SEED = int.from_bytes(os.urandom(8), "little")


cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    x ^= x >> 30
    x *= <uint64_t>0xbf58476d1ce4e5b9
    x ^= x >> 27
    x *= <uint64_t>0x94d049bb133111eb
    x ^= x >> 31
    return x


cdef uint64_t _hash(int64_t nix, uint8_t kind, int64_t word, const char* data, Py_ssize_t size) noexcept nogil:
    """The table hash of key (``kind``, ``word`` or ``data``) of the reducer named ``nix``."""
    cdef uint64_t h = SEED ^ (<uint64_t>nix * <uint64_t>0x9e3779b97f4a7c15) ^ (<uint64_t>kind << 56)
    cdef uint64_t w
    cdef Py_ssize_t i = 0
    if kind == KIND_STR or kind == KIND_BYTES:
        h = _mix(h ^ <uint64_t>size)
        while i + 8 <= size:
            memcpy(&w, data + i, 8)
            h = _mix(h ^ w)
            i += 8
        if i < size:
            w = 0
            memcpy(&w, data + i, size - i)
            h = _mix(h ^ w ^ <uint64_t>0x2545f4914f6cdd1d)
        return h
    return _mix(h ^ <uint64_t>word)


cdef extern from "aos_blake3.h" nogil:
    ctypedef struct aos_b3:
        pass
    void aos_b3_init(aos_b3* h)
    void aos_b3_update(aos_b3* h, const uint8_t* data, size_t n)
    void aos_b3_final(const aos_b3* h, uint8_t* digest)
    void aos_b3_hash2(const uint8_t* a, size_t na, const uint8_t* b, size_t nb, uint8_t* digest)


cdef void* _grow(void* p, int64_t size) except NULL:
    cdef void* q = realloc(p, size)
    if q == NULL:
        free(p)
        raise MemoryError()
    return q


cdef inline Py_ssize_t _cbor_head(uint8_t* p, uint8_t major, uint64_t v) noexcept nogil:
    """A canonical CBOR head (the shortest form) of ``major`` and ``v`` at ``p``; its length."""
    cdef int n, k
    major <<= 5
    if v < 24:
        p[0] = major | <uint8_t>v
        return 1
    n = 1 if v < 0x100 else 2 if v < 0x10000 else 4 if v < <uint64_t>0x100000000 else 8
    p[0] = major | (24 if n == 1 else 25 if n == 2 else 26 if n == 4 else 27)
    for k in range(n):
        p[n - k] = <uint8_t>(v >> (8 * k))
    return 1 + n


cdef inline bint _before(const uint8_t* buf, int64_t a, int64_t b) noexcept nogil:
    """Whether the part at ``a`` sorts before (or equal to) the one at ``b``."""
    cdef uint32_t na = _load32(<const char*>(buf + a)), nb = _load32(<const char*>(buf + b))
    cdef int c = memcmp(buf + a + 4, buf + b + 4, na if na < nb else nb)
    return c < 0 or (c == 0 and na <= nb)


cdef void _merge(const uint8_t* buf, const int64_t* src, int64_t* dst, int64_t lo, int64_t mid,
                 int64_t hi) noexcept nogil:
    cdef int64_t i = lo, j = mid, k = lo
    while i < mid and j < hi:
        if _before(buf, src[i], src[j]):
            dst[k] = src[i]
            i += 1
        else:
            dst[k] = src[j]
            j += 1
        k += 1
    while i < mid:
        dst[k] = src[i]
        i += 1
        k += 1
    while j < hi:
        dst[k] = src[j]
        j += 1
        k += 1


cdef void _sort_parts(const uint8_t* buf, int64_t** at, int64_t** tmp, int64_t count) noexcept nogil:
    """Sort ``at[0][:count]``, offsets of length-prefixed parts in ``buf``, by the parts' bytes (bottom-up merge
    sort; the parts are prefix-free, so memcmp orders them). The sorted offsets end in ``at[0]``: the two
    arrays may swap."""
    cdef int64_t width = 1, i
    cdef int64_t* t
    while width < count:
        i = 0
        while i < count:
            _merge(buf, at[0], tmp[0], i, min(i + width, count), min(i + 2 * width, count))
            i += 2 * width
        t = at[0]
        at[0] = tmp[0]
        tmp[0] = t
        width *= 2


cdef int _key_parts(object key, uint8_t* kind, int64_t* word, const char** data, Py_ssize_t* size) except -1:
    """How a cell key is stored: str, bytes, an int of the signed 64-bit range (not a bool), or None."""
    cdef int overflow = 0
    cdef long long v
    data[0] = NULL
    size[0] = 0
    word[0] = 0
    if key is None:
        kind[0] = KIND_NONE
    elif PyUnicode_Check(key):
        try:
            data[0] = PyUnicode_AsUTF8AndSize(key, size)
        except UnicodeEncodeError:
            raise InvalidKeyError(f"cell key {brief(key)} is not valid text (it has no UTF-8 encoding)") from None
        kind[0] = KIND_STR
    elif PyBytes_Check(key):
        data[0] = PyBytes_AS_STRING(key)
        size[0] = PyBytes_GET_SIZE(key)
        kind[0] = KIND_BYTES
    elif PyLong_Check(key) and not PyBool_Check(key):
        v = PyLong_AsLongLongAndOverflow(key, &overflow)
        if overflow:
            raise InvalidKeyError(f"cell key {brief(key)} is outside the signed 64-bit range")
        word[0] = v
        kind[0] = KIND_INT
    else:
        raise InvalidKeyError(f"a cell key must be str, int or bytes (or none, for an unkeyed reducer), "
                              f"got {type(key).__name__} {brief(key)}")
    if size[0] > 0xFFFFFFFF:
        raise InvalidKeyError(f"cell key of {size[0]} bytes is too long")
    return 0


cdef inline uint32_t _load32(const char* p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline void _store32(char* p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)


cdef inline Py_ssize_t _cell_part(uint8_t* p, const char* head, Py_ssize_t head_n, uint8_t kind, int64_t word,
                                   const char* key, Py_ssize_t klen, const uint8_t* state,
                                   Py_ssize_t size) noexcept nogil:
    """One cell's part of a snapshot's ``cells`` array, written at ``p``: its reducer's head, its key (none,
    an int, or ``klen`` bytes of text or bytes at ``key``), its state's hash. Returns the bytes written."""
    cdef Py_ssize_t i = head_n
    memcpy(p, head, head_n)
    if kind == KIND_NONE:
        p[i] = 0xF6
        i += 1
    elif kind == KIND_INT:
        if word >= 0:
            i += _cbor_head(p + i, 0, <uint64_t>word)
        else:
            i += _cbor_head(p + i, 1, <uint64_t>(-1 - word))
    else:
        i += _cbor_head(p + i, 3 if kind == KIND_STR else 2, <uint64_t>klen)
        memcpy(p + i, key, klen)
        i += klen
    aos_b3_hash2(state, size, NULL, 0, p + i)
    return i + 32


cdef class CellStore:
    """Cell ids, keys, reducers and committed states (see the module's docstring)."""

    def __cinit__(self):
        self.off = NULL
        self.size = NULL
        self.word = NULL
        self.spec_ix = NULL
        self.kind = NULL
        self.arena = NULL
        self.keys = NULL
        self.spec_name = NULL
        self.table = <uint32_t*>calloc(64, sizeof(uint32_t))
        if self.table == NULL:
            PyErr_NoMemory()
        self.table_cap = 64
        self.spec_list = []
        self.spec_index = {}
        self.name_index = {}
        self.last_spec = None
        self.pins = {}

    def __dealloc__(self):
        free(self.off)
        free(self.size)
        free(self.word)
        free(self.spec_ix)
        free(self.kind)
        free(self.arena)
        free(self.keys)
        free(self.table)
        free(self.spec_name)

    # ------------------------------------------------------------ the C API
    cdef int64_t c_id_of(self, object spec, object key) except -1:
        """The id of cell (``spec``'s reducer, ``key``), allocating one (that runs ``spec``) on first use."""
        cdef uint8_t kind
        cdef int64_t word, cid, six
        cdef const char* data
        cdef Py_ssize_t size
        _key_parts(key, &kind, &word, &data, &size)
        six = self._spec_index(spec)
        cdef int64_t nix = self.spec_name[six]
        cdef uint64_t h = _hash(nix, kind, word, data, size)
        cid = self._probe(nix, kind, word, data, size, h)
        if cid >= 0:
            return cid
        with cython.critical_section(self):  # (arrays may move: a worker may be reading a state)
            return self._new_cell(six, nix, kind, word, data, size, h)

    cdef int64_t _new_cell(self, int64_t six, int64_t nix, uint8_t kind, int64_t word, const char* data,
                           Py_ssize_t size, uint64_t h) except -1:
        cdef int64_t cid, slot, want
        cdef char* p
        if self.n >= MAX_CELLS:
            raise MemoryError(f"a world holds at most {MAX_CELLS} cells")
        if (self.n + 1) * 2 > self.table_cap:
            self._grow_table()
        slot = -self._probe(nix, kind, word, data, size, h) - 1
        if self.n == self.cap:
            self._grow_cells()
        if kind == KIND_STR or kind == KIND_BYTES:
            if self.keys_used + 4 + size > self.keys_cap:
                want = self.keys_cap * 2 if self.keys_cap else 4096
                while want < self.keys_used + 4 + size:
                    want *= 2
                p = <char*>realloc(self.keys, want)
                if p == NULL:
                    PyErr_NoMemory()
                self.keys = p
                self.keys_cap = want
            word = self.keys_used
            _store32(self.keys + word, <uint32_t>size)
            memcpy(self.keys + word + 4, data, size)
            self.keys_used += 4 + size
        cid = self.n
        self.off[cid] = -1
        self.size[cid] = 0
        self.word[cid] = word
        self.spec_ix[cid] = <uint16_t>six
        self.kind[cid] = kind
        self.table[slot] = <uint32_t>(cid + 1)
        self.n += 1
        return cid

    cdef int64_t c_find(self, object name, object key) except -2:
        """The id of cell (reducer ``name``, ``key``), or -1."""
        cdef uint8_t kind
        cdef int64_t word, cid
        cdef const char* data
        cdef Py_ssize_t size
        _key_parts(key, &kind, &word, &data, &size)
        ix = self.name_index.get(name)
        if ix is None:
            return -1
        cdef int64_t nix = ix
        cid = self._probe(nix, kind, word, data, size, _hash(nix, kind, word, data, size))
        return cid if cid >= 0 else -1

    cdef object c_spec(self, int64_t cid):
        return <object>PyList_GET_ITEM(self.spec_list, self.spec_ix[cid])

    cdef object c_key(self, int64_t cid):
        cdef uint8_t kind = self.kind[cid]
        cdef const char* p
        if kind == KIND_INT:
            return PyLong_FromLongLong(self.word[cid])
        if kind == KIND_NONE:
            return None
        p = self.keys + self.word[cid]
        if kind == KIND_STR:
            return PyUnicode_DecodeUTF8(p + 4, _load32(p), NULL)
        return PyBytes_FromStringAndSize(p + 4, _load32(p))

    cdef object c_state(self, int64_t cid):
        cdef int64_t o = self.off[cid]
        if o < 0:
            return None
        return PyBytes_FromStringAndSize(self.arena + o, self.size[cid])

    cdef bint c_has_state(self, int64_t cid) noexcept:
        return self.off[cid] >= 0

    cdef int c_set(self, int64_t cid, object state) except -1:
        """Cell ``cid`` holds ``state`` (bytes) from now on; None: it holds no state."""
        if state is not None and not PyBytes_Check(state):
            raise TypeError(f"a cell state is bytes, got {type(state).__name__}")
        with cython.critical_section(self):  # (the arena may move: a worker may be reading a state)
            return self._set(cid, state)

    cdef int _set(self, int64_t cid, object state) except -1:
        cdef int64_t old = self.off[cid]
        cdef Py_ssize_t size
        if state is None:
            if old >= 0:
                self.garbage += self.size[cid]
                self.off[cid] = -1
                self.size[cid] = 0
                self.live -= 1
            return 0
        size = PyBytes_GET_SIZE(state)
        if size > 0xFFFFFFFF:
            raise ValueError(f"a cell state of {size} bytes is over the 4 GiB a cell holds")
        if old >= 0 and size <= self.size[cid]:
            memcpy(self.arena + old, PyBytes_AS_STRING(state), size)  # in its place
            self.garbage += self.size[cid] - size
            self.size[cid] = <uint32_t>size
            return 0
        self._reserve_arena(size)  # (a compaction here keeps the cell's current bytes: they are still its state)
        if self.off[cid] >= 0:
            self.garbage += self.size[cid]
        else:
            self.live += 1
        memcpy(self.arena + self.used, PyBytes_AS_STRING(state), size)
        self.off[cid] = self.used
        self.size[cid] = <uint32_t>size
        self.used += size
        return 0

    # ------------------------------------------------------------ internals
    cdef int64_t _spec_index(self, object spec) except -1:
        """The index of ``spec`` in :attr:`spec_list`, adding it on first use."""
        cdef int64_t ix
        cdef uint16_t* p
        if spec is self.last_spec:
            return self.last_ix
        found = self.spec_index.get(id(spec))
        if found is None:
            name = spec.name
            nix = self.name_index.get(name)
            if nix is None:
                nix = len(self.name_index)
                self.name_index[name] = nix
            ix = len(self.spec_list)
            if ix >= MAX_SPECS:
                raise MemoryError(f"a world's cells run at most {MAX_SPECS} reducers (of every era)")
            if ix == self.spec_cap:
                p = <uint16_t*>realloc(self.spec_name, (self.spec_cap * 2 + 8) * sizeof(uint16_t))
                if p == NULL:
                    PyErr_NoMemory()
                self.spec_name = p
                self.spec_cap = self.spec_cap * 2 + 8
            self.spec_name[ix] = <uint16_t>nix
            self.spec_list.append(spec)
            self.spec_index[id(spec)] = ix
        else:
            ix = found
        self.last_spec = spec
        self.last_ix = ix
        return ix

    cdef int64_t _probe(self, int64_t nix, uint8_t kind, int64_t word, const char* data, Py_ssize_t size,
                        uint64_t h) noexcept:
        """The id of the cell with this key, or -(slot + 1) for the empty slot where it would go."""
        cdef uint64_t mask = <uint64_t>self.table_cap - 1
        cdef uint64_t i = h & mask
        cdef uint32_t slot
        cdef int64_t cid
        cdef const char* p
        while True:
            slot = self.table[i]
            if slot == 0:
                return -<int64_t>i - 1
            cid = slot - 1
            if self.kind[cid] == kind and self.spec_name[self.spec_ix[cid]] == nix:
                if kind == KIND_INT:
                    if self.word[cid] == word:
                        return cid
                elif kind == KIND_NONE:
                    return cid
                else:
                    p = self.keys + self.word[cid]
                    if _load32(p) == <uint32_t>size and memcmp(p + 4, data, size) == 0:
                        return cid
            i = (i + 1) & mask

    cdef int _grow_table(self) except -1:
        cdef int64_t cap = self.table_cap * 2
        cdef int64_t cid, k
        cdef uint64_t i, mask = <uint64_t>cap - 1
        cdef const char* p
        cdef uint32_t* t = <uint32_t*>calloc(cap, sizeof(uint32_t))
        if t == NULL:
            PyErr_NoMemory()
        for cid in range(self.n):
            k = self.kind[cid]
            if k == KIND_STR or k == KIND_BYTES:
                p = self.keys + self.word[cid]
                i = _hash(self.spec_name[self.spec_ix[cid]], k, 0, p + 4, _load32(p)) & mask
            else:
                i = _hash(self.spec_name[self.spec_ix[cid]], k, self.word[cid], NULL, 0) & mask
            while t[i] != 0:
                i = (i + 1) & mask
            t[i] = <uint32_t>(cid + 1)
        free(self.table)
        self.table = t
        self.table_cap = cap
        return 0

    cdef int _grow_cells(self) except -1:
        cdef int64_t cap = self.cap * 2 if self.cap else 1024
        cdef void* p
        p = realloc(self.off, cap * sizeof(int64_t))
        if p == NULL:
            PyErr_NoMemory()
        self.off = <int64_t*>p
        p = realloc(self.size, cap * sizeof(uint32_t))
        if p == NULL:
            PyErr_NoMemory()
        self.size = <uint32_t*>p
        p = realloc(self.word, cap * sizeof(int64_t))
        if p == NULL:
            PyErr_NoMemory()
        self.word = <int64_t*>p
        p = realloc(self.spec_ix, cap * sizeof(uint16_t))
        if p == NULL:
            PyErr_NoMemory()
        self.spec_ix = <uint16_t*>p
        p = realloc(self.kind, cap * sizeof(uint8_t))
        if p == NULL:
            PyErr_NoMemory()
        self.kind = <uint8_t*>p
        self.cap = cap
        return 0

    cdef int _reserve_arena(self, int64_t extra) except -1:
        """Room for ``extra`` more bytes at the arena's end: compacting it first when a quarter is garbage."""
        cdef int64_t cap
        cdef char* p
        if self.used + extra <= self.arena_cap:
            return 0
        if self.garbage > 0 and self.garbage * 4 >= self.used:
            self._compact()
            if self.used + extra <= self.arena_cap:
                return 0
        cap = self.arena_cap * 2 if self.arena_cap else MIN_ARENA
        while cap < self.used + extra:
            cap *= 2
        p = <char*>realloc(self.arena, cap)
        if p == NULL:
            PyErr_NoMemory()
        self.arena = p
        self.arena_cap = cap
        return 0

    cdef int _compact(self) except -1:
        """Squeeze the garbage out of the arena, in place: live states slide down in offset order."""
        cdef int64_t count = 0, i, j, cid, at = 0, shift
        cdef int64_t bits = 0
        cdef uint32_t* order
        cdef uint32_t* other
        cdef uint32_t* t
        cdef int64_t* counts
        cdef int64_t cap
        cdef char* p
        for cid in range(self.n):
            if self.off[cid] >= 0:
                count += 1
        order = <uint32_t*>malloc((count + 1) * sizeof(uint32_t))
        other = <uint32_t*>malloc((count + 1) * sizeof(uint32_t))
        counts = <int64_t*>malloc(65536 * sizeof(int64_t))
        if order == NULL or other == NULL or counts == NULL:
            free(order)
            free(other)
            free(counts)
            PyErr_NoMemory()
        j = 0
        for cid in range(self.n):
            if self.off[cid] >= 0:
                order[j] = <uint32_t>cid
                j += 1
        count = j
        while (self.used >> bits) > 0:
            bits += 16
        # radix sort of the live ids by offset, 16 bits a pass (stable)
        shift = 0
        while shift < bits:
            for i in range(65536):
                counts[i] = 0
            for i in range(count):
                counts[(self.off[order[i]] >> shift) & 0xFFFF] += 1
            at = 0
            for i in range(65536):
                j = counts[i]
                counts[i] = at
                at += j
            for i in range(count):
                j = (self.off[order[i]] >> shift) & 0xFFFF
                other[counts[j]] = order[i]
                counts[j] += 1
            t = order
            order = other
            other = t
            shift += 16
        at = 0
        for i in range(count):
            cid = order[i]
            if self.off[cid] != at:
                memmove(self.arena + at, self.arena + self.off[cid], self.size[cid])
                self.off[cid] = at
            at += self.size[cid]
        free(order)
        free(other)
        free(counts)
        self.used = at
        self.garbage = 0
        self.compactions += 1
        # give back what the arena no longer needs (a later growth takes it again)
        cap = self.arena_cap
        while cap > MIN_ARENA and cap // 4 >= self.used:
            cap //= 2
        if cap != self.arena_cap:
            p = <char*>realloc(self.arena, cap)
            if p != NULL:
                self.arena = p
                self.arena_cap = cap
        return 0

    # ------------------------------------------------------------ the Python API
    cdef int _check(self, object cid) except -1:
        if type(cid) is not int or not 0 <= cid < self.n:
            raise IndexError(f"no cell id {cid!r} (ids 0..{self.n - 1})")
        return 0

    def __len__(self):
        """Number of cells that hold a state."""
        return self.live

    @property
    def count(self):
        """Number of cell ids given (cells with a state or without: a deleted cell keeps its id)."""
        return self.n

    def id_of(self, spec, key):
        """The id of cell (``spec``'s reducer, ``key``), allocating one (that runs ``spec``) on first use."""
        return self.c_id_of(spec, key)

    def find(self, str reducer, key):
        """The id of cell (``reducer``, ``key``), or None."""
        cdef int64_t cid = self.c_find(reducer, key)
        return None if cid < 0 else cid

    def spec(self, cid):
        """The reducer cell ``cid`` runs."""
        self._check(cid)
        return self.c_spec(cid)

    def key(self, cid):
        """The key of cell ``cid`` (None for an unkeyed reducer's cell)."""
        self._check(cid)
        return self.c_key(cid)

    def state(self, cid):
        """The committed state bytes of cell ``cid``, or None."""
        self._check(cid)
        with cython.critical_section(self):
            return self.c_state(cid)

    def has_state(self, cid):
        self._check(cid)
        return self.c_has_state(cid)

    def state_hash(self, cid):
        """The BLAKE3 of cell ``cid``'s state bytes, or None."""
        self._check(cid)
        state = self.c_state(cid)
        return None if state is None else digest_of(<bytes>state)

    def set_state(self, cid, state):
        """Cell ``cid`` holds ``state`` (bytes) from now on; None: it holds no state."""
        self._check(cid)
        self.c_set(cid, state)

    def set_spec(self, cid, spec):
        """Cell ``cid`` runs ``spec`` from now on (a reducer of the same name)."""
        self._check(cid)
        if spec.name != self.c_spec(cid).name:
            raise ValueError(f"cell {cid} belongs to reducer {self.c_spec(cid).name}, not {spec.name}")
        self.spec_ix[<int64_t>cid] = <uint16_t>self._spec_index(spec)

    def live_ids(self):
        """The ids of the cells that hold a state, in id order."""
        cdef int64_t cid
        for cid in range(self.n):
            if self.off[cid] >= 0:
                yield cid

    def live_cells(self):
        """``(id, spec, key)`` of every cell that holds a state, in id order."""
        cdef int64_t cid
        for cid in range(self.n):
            if self.off[cid] >= 0:
                yield cid, self.c_spec(cid), self.c_key(cid)

    def entries(self):
        """``(id, spec, key, state bytes)`` of every cell that holds a state, in id order."""
        cdef int64_t cid
        for cid in range(self.n):
            if self.off[cid] >= 0:
                yield cid, self.c_spec(cid), self.c_key(cid), self.c_state(cid)

    def hash_parts(self):
        """``cbor([reducer, key]) || BLAKE3(state)`` of every cell that holds a state, in id order: what the
        snapshot hash covers (aos.cells.CellTable.snapshot_hash sorts and hashes them)."""
        cdef int64_t cid
        cdef list out = []
        cdef dict heads = {}
        for cid in range(self.n):
            if self.off[cid] >= 0:
                name = self.c_spec(cid).name
                head = heads.get(name)
                if head is None:
                    head = heads[name] = b"\x82" + encode(name)  # a 2-array, then the reducer's name
                key = encode(self.c_key(cid))
                if key is None:  # (keys are None, str, int or bytes: the C writer takes them all)
                    raise ValueError(f"cell key {self.c_key(cid)!r:.100} cannot be encoded")
                out.append(head + <bytes>key + digest_of(self.c_state(cid)))
        return out

    cdef const char* _key_bytes(self, int64_t cid, Py_ssize_t* klen) noexcept nogil:
        """The bytes of cell ``cid``'s text or bytes key (their length in ``klen``); NULL, 0 for other keys."""
        cdef uint8_t kind = self.kind[cid]
        cdef const char* kp
        if kind != KIND_STR and kind != KIND_BYTES:
            klen[0] = 0
            return NULL
        kp = self.keys + self.word[cid]
        klen[0] = _load32(kp)
        return kp + 4

    def snapshot_digest(self, bytes domain):
        """BLAKE3 of ``domain`` then the :meth:`hash_parts` of every cell that holds a state, sorted: the
        snapshot hash, built in C (the parts in one buffer, each state hashed where it lies in the arena)."""
        cdef Py_ssize_t names = len(self.name_index)
        heads = [None] * names
        for name, nix in self.name_index.items():
            heads[nix] = b"\x82" + encode(name)  # a 2-array, then the reducer's name
        cdef const char** head_p = <const char**>malloc((names + 1) * sizeof(char*))
        cdef Py_ssize_t* head_n = <Py_ssize_t*>malloc((names + 1) * sizeof(Py_ssize_t))
        cdef int64_t* at = <int64_t*>malloc((self.n + 1) * sizeof(int64_t))
        cdef int64_t* tmp = <int64_t*>malloc((self.n + 1) * sizeof(int64_t))
        cdef uint8_t* buf = NULL
        cdef int64_t used = 0, cap = 0, count = 0, cid, i
        cdef Py_ssize_t ix, need, klen
        cdef uint8_t kind
        cdef const char* kp
        cdef uint8_t digest[32]
        cdef aos_b3 h
        try:
            if head_p == NULL or head_n == NULL or at == NULL or tmp == NULL:
                raise MemoryError()
            for ix in range(names):
                head_p[ix] = PyBytes_AS_STRING(heads[ix])
                head_n[ix] = PyBytes_GET_SIZE(heads[ix])
            for cid in range(self.n):
                if self.off[cid] < 0:
                    continue
                ix = self.spec_name[self.spec_ix[cid]]
                kind = self.kind[cid]
                kp = self._key_bytes(cid, &klen)
                need = 4 + head_n[ix] + 9 + klen + 32
                if used + need > cap:
                    cap = max(cap * 2, used + need, 1 << 16)
                    buf = <uint8_t*>_grow(buf, cap)
                i = used + 4 + _cell_part(buf + used + 4, head_p[ix], head_n[ix], kind, self.word[cid], kp, klen,
                                          <const uint8_t*>(self.arena + self.off[cid]), self.size[cid])
                _store32(<char*>(buf + used), <uint32_t>(i - used - 4))  # the part's length, before it
                at[count] = used
                count += 1
                used = i
            _sort_parts(buf, &at, &tmp, count)
            aos_b3_init(&h)
            aos_b3_update(&h, <const uint8_t*>PyBytes_AS_STRING(domain), PyBytes_GET_SIZE(domain))
            for i in range(count):
                aos_b3_update(&h, buf + at[i] + 4, _load32(<const char*>(buf + at[i])))
            aos_b3_final(&h, digest)
            return PyBytes_FromStringAndSize(<char*>digest, 32)
        finally:
            free(head_p)
            free(head_n)
            free(at)
            free(tmp)
            free(buf)

    def memory(self):
        """Bytes the store holds, by part (allocated; the arenas also say how much is in use)."""
        per_cell = sizeof(int64_t) + sizeof(uint32_t) + sizeof(int64_t) + sizeof(uint16_t) + sizeof(uint8_t)
        return {"cells": self.n, "per_cell_arrays": self.cap * per_cell, "table": self.table_cap * 4,
                "arena": self.arena_cap, "arena_used": self.used, "garbage": self.garbage,
                "keys": self.keys_cap, "keys_used": self.keys_used, "compactions": self.compactions}


    # ------------------------------------------------------------ background snapshots
    def frozen(self):
        """A copy of the store as it is now (flat copies of its arrays), for a snapshot written meanwhile.

        The copy shares the reducer specs and is read only; the store goes on changing independently.
        """
        cdef CellStore c = type(self).__new__(type(self))
        cdef int64_t n = self.n
        free(c.table)
        c.table = NULL
        c.off = <int64_t*>malloc((n + 1) * sizeof(int64_t))
        c.size = <uint32_t*>malloc((n + 1) * sizeof(uint32_t))
        c.word = <int64_t*>malloc((n + 1) * sizeof(int64_t))
        c.spec_ix = <uint16_t*>malloc((n + 1) * sizeof(uint16_t))
        c.kind = <uint8_t*>malloc(n + 1)
        c.arena = <char*>malloc(self.used + 1)
        c.keys = <char*>malloc(self.keys_used + 1)
        c.table = <uint32_t*>malloc(self.table_cap * sizeof(uint32_t))
        c.spec_name = <uint16_t*>malloc((len(self.spec_list) + 1) * sizeof(uint16_t))
        if (c.off == NULL or c.size == NULL or c.word == NULL or c.spec_ix == NULL or c.kind == NULL
                or c.arena == NULL or c.keys == NULL or c.table == NULL or c.spec_name == NULL):
            raise MemoryError()
        memcpy(c.off, self.off, n * sizeof(int64_t))
        memcpy(c.size, self.size, n * sizeof(uint32_t))
        memcpy(c.word, self.word, n * sizeof(int64_t))
        memcpy(c.spec_ix, self.spec_ix, n * sizeof(uint16_t))
        memcpy(c.kind, self.kind, n)
        memcpy(c.arena, self.arena, self.used)
        memcpy(c.keys, self.keys, self.keys_used)
        memcpy(c.table, self.table, self.table_cap * sizeof(uint32_t))
        memcpy(c.spec_name, self.spec_name, len(self.spec_list) * sizeof(uint16_t))
        c.n = c.cap = n
        c.used = c.arena_cap = self.used
        c.garbage = 0
        c.keys_used = c.keys_cap = self.keys_used
        c.table_cap = self.table_cap
        c.spec_cap = len(self.spec_list)
        c.spec_list = list(self.spec_list)
        c.spec_index = dict(self.spec_index)
        c.name_index = dict(self.name_index)
        c.last_spec = None
        c.live = self.live
        c.pins = dict(self.pins)
        c.current = self.current
        return c

    def snapshot_sections(self, bytes domain):
        """``(states, cells, snapshot hash)``: the canonical CBOR of a snapshot's ``states`` map
        (``{state hash: state}``) and ``cells`` array (``[[reducer, key, state hash]]`` in canonical order),
        the same bytes ``aos.canonical.encode`` writes for ``CellTable.snapshot_parts``, and the snapshot
        hash. Built in C with the GIL released (call it on a :meth:`frozen` copy no one changes)."""
        cdef Py_ssize_t names = len(self.name_index)
        heads = [None] * names
        for name, nix in self.name_index.items():
            heads[nix] = b"\x82" + encode(name)
        cdef const char** head_p = <const char**>malloc((names + 1) * sizeof(char*))
        cdef Py_ssize_t* head_n = <Py_ssize_t*>malloc((names + 1) * sizeof(Py_ssize_t))
        cdef int64_t* at = <int64_t*>malloc((self.n + 1) * sizeof(int64_t))
        cdef int64_t* tmp = <int64_t*>malloc((self.n + 1) * sizeof(int64_t))
        cdef int64_t* hat = <int64_t*>malloc((self.n + 1) * sizeof(int64_t))
        cdef uint8_t* buf = NULL
        cdef uint8_t* hbuf = NULL
        cdef uint8_t* out
        cdef uint8_t* cells_p
        cdef uint8_t* states_p
        cdef uint8_t head[9]
        cdef int64_t used = 0, count = 0, cid, i, j, total = 0, cells_size = 0, states_size = 0
        cdef int64_t unique = 0, c2, plen
        cdef Py_ssize_t ix, klen
        cdef uint8_t kind
        cdef const char* kp
        cdef uint8_t digest[32]
        cdef aos_b3 h
        cdef bint failed = False
        cdef const uint8_t* dom = <const uint8_t*>PyBytes_AS_STRING(domain)
        cdef Py_ssize_t dom_n = PyBytes_GET_SIZE(domain)
        try:
            if head_p == NULL or head_n == NULL or at == NULL or tmp == NULL or hat == NULL:
                raise MemoryError()
            for ix in range(names):
                head_p[ix] = PyBytes_AS_STRING(heads[ix])
                head_n[ix] = PyBytes_GET_SIZE(heads[ix])
            with nogil:
                # the size of every part: u32 length | cbor([reducer, key]) | state hash | i64 cell id
                for cid in range(self.n):
                    if self.off[cid] < 0:
                        continue
                    kind = self.kind[cid]
                    klen = 1
                    if kind == KIND_INT:
                        klen = _cbor_head(head, 0 if self.word[cid] >= 0 else 1,
                                          <uint64_t>self.word[cid] if self.word[cid] >= 0
                                          else <uint64_t>(-1 - self.word[cid]))
                    elif kind == KIND_STR or kind == KIND_BYTES:
                        klen = _load32(self.keys + self.word[cid])
                        klen += _cbor_head(head, 2, <uint64_t>klen)
                    total += 4 + head_n[self.spec_name[self.spec_ix[cid]]] + klen + 32 + 8
                buf = <uint8_t*>malloc(total + 1)
                hbuf = <uint8_t*>malloc(self.n * 44 + 1)
                if buf == NULL or hbuf == NULL:
                    failed = True
                else:
                    for cid in range(self.n):
                        if self.off[cid] < 0:
                            continue
                        ix = self.spec_name[self.spec_ix[cid]]
                        kind = self.kind[cid]
                        kp = self._key_bytes(cid, &klen)
                        i = used + 4 + _cell_part(buf + used + 4, head_p[ix], head_n[ix], kind, self.word[cid], kp,
                                                  klen, <const uint8_t*>(self.arena + self.off[cid]),
                                                  self.size[cid]) - 32  # where the state's hash is
                        # the states' sort record: u32 32 | state hash | i64 cell id
                        _store32(<char*>(hbuf + count * 44), 32)
                        memcpy(hbuf + count * 44 + 4, buf + i, 32)
                        memcpy(hbuf + count * 44 + 36, &cid, 8)
                        hat[count] = count * 44
                        i += 32
                        _store32(<char*>(buf + used), <uint32_t>(i - used - 4))
                        memcpy(buf + i, &cid, 8)
                        at[count] = used
                        count += 1
                        used = i + 8
                    _sort_parts(buf, &at, &tmp, count)
                    _sort_parts(hbuf, &hat, &tmp, count)
                    aos_b3_init(&h)
                    aos_b3_update(&h, dom, dom_n)
                    for i in range(count):
                        plen = _load32(<const char*>(buf + at[i]))
                        aos_b3_update(&h, buf + at[i] + 4, plen)
                        cells_size += plen + 2  # [reducer, key, hash]: the 0x83 head, the hash's 2-byte head
                    aos_b3_final(&h, digest)
                    cells_size += _cbor_head(head, 4, <uint64_t>count)
                    for i in range(count):
                        if i > 0 and memcmp(hbuf + hat[i] + 4, hbuf + hat[i - 1] + 4, 32) == 0:
                            continue
                        memcpy(&c2, hbuf + hat[i] + 36, 8)
                        unique += 1
                        states_size += 34 + _cbor_head(head, 2, self.size[c2]) + self.size[c2]
                    states_size += _cbor_head(head, 5, <uint64_t>unique)
            if failed:
                raise MemoryError()
            cells_out = PyBytes_FromStringAndSize(NULL, cells_size)
            states_out = PyBytes_FromStringAndSize(NULL, states_size)
            cells_p = <uint8_t*>PyBytes_AS_STRING(cells_out)
            states_p = <uint8_t*>PyBytes_AS_STRING(states_out)
            with nogil:
                out = cells_p
                j = _cbor_head(out, 4, <uint64_t>count)
                for i in range(count):
                    plen = _load32(<const char*>(buf + at[i]))
                    out[j] = 0x83
                    memcpy(out + j + 1, buf + at[i] + 5, plen - 33)
                    j += plen - 32
                    out[j] = 0x58
                    out[j + 1] = 32
                    memcpy(out + j + 2, buf + at[i] + 4 + plen - 32, 32)
                    j += 34
                out = states_p
                j = _cbor_head(out, 5, <uint64_t>unique)
                for i in range(count):
                    if i > 0 and memcmp(hbuf + hat[i] + 4, hbuf + hat[i - 1] + 4, 32) == 0:
                        continue
                    memcpy(&c2, hbuf + hat[i] + 36, 8)
                    out[j] = 0x58
                    out[j + 1] = 32
                    memcpy(out + j + 2, hbuf + hat[i] + 4, 32)
                    j += 34
                    j += _cbor_head(out + j, 2, self.size[c2])
                    memcpy(out + j, self.arena + self.off[c2], self.size[c2])
                    j += self.size[c2]
            return states_out, cells_out, PyBytes_FromStringAndSize(<char*>digest, 32)
        finally:
            free(head_p)
            free(head_n)
            free(at)
            free(tmp)
            free(hat)
            free(buf)
            free(hbuf)
