# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""The canonical CBOR writer of the step path.

Every step encodes the state its reducer returned and two journal records;
with cbor2 that is three calls costing more than the rest of a trivial step.
This module writes the same bytes in C, for the values it knows exactly:

* ``None``, ``bool``, ``int`` in the 64-bit range, ``float``, ``str``,
  ``bytes``, ``list``, ``tuple`` and ``dict`` — exact types only, never
  subclasses;
* floats in their shortest IEEE 754 width that keeps the value, ``-0.0``
  written as ``0.0``; ``NaN`` is not written;
* definite lengths, shortest heads, map keys (``str``, ``int`` or ``bytes``)
  sorted by their encoded bytes, shorter first (RFC 7049 §3.9).

Anything else (a NaN, a big int, a subclass, a bad key, nesting deeper than
``MAX_DEPTH``) makes :func:`encode` return ``None``: the caller then takes the
general path (:mod:`aos.canonical`), which writes the same bytes or raises the
precise error. The tests compare this writer with cbor2's canonical mode.

Record payloads are written here too (:func:`step_scheduled`,
:func:`step_committed`, :func:`ordered`): their maps come with keys already in
canonical order, so they are written as given.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.exc cimport PyErr_NoMemory
from libc.string cimport memcpy, memcmp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.math cimport frexp, ldexp, isnan, isinf, fabs, floor


cdef extern from "Python.h":
    ctypedef struct PyObject
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1
    Py_ssize_t PySequence_Fast_GET_SIZE(object)
    PyObject* PySequence_Fast_GET_ITEM(object, Py_ssize_t)
    Py_ssize_t PyDict_GET_SIZE(object)
    int PyDict_Next(object, Py_ssize_t*, PyObject**, PyObject**)
    double PyFloat_AS_DOUBLE(object)


cdef enum:
    MAX_DEPTH_C = 400  # deepest container nesting in the model (aos.canonical.MAX_DEPTH)
    OK = 0
    UNSUPPORTED = 1

MAX_DEPTH = MAX_DEPTH_C

__all__ = ["encode", "ordered", "event_admitted", "step_scheduled", "step_committed", "record_kind", "MAX_DEPTH"]


cdef struct Buf:
    unsigned char* p
    Py_ssize_t n
    Py_ssize_t cap
    unsigned char[256] small


cdef inline void buf_init(Buf* b) noexcept:
    b.p = b.small
    b.n = 0
    b.cap = 256


cdef inline void buf_free(Buf* b) noexcept:
    if b.p != b.small:
        PyMem_Free(b.p)


cdef int buf_grow(Buf* b, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = b.cap * 2
    cdef unsigned char* p
    while cap < b.n + need:
        cap *= 2
    if b.p == b.small:
        p = <unsigned char*>PyMem_Malloc(cap)
        if p != NULL:
            memcpy(p, b.small, b.n)
    else:
        p = <unsigned char*>PyMem_Realloc(b.p, cap)
    if p == NULL:
        PyErr_NoMemory()
        return -1
    b.p = p
    b.cap = cap
    return 0


cdef inline int reserve(Buf* b, Py_ssize_t need) except -1:
    if b.n + need > b.cap:
        return buf_grow(b, need)
    return 0


cdef inline int put_bytes(Buf* b, const void* data, Py_ssize_t n) except -1:
    if b.n + n > b.cap:
        buf_grow(b, n)
    memcpy(b.p + b.n, data, n)
    b.n += n
    return 0


cdef inline int head(Buf* b, unsigned int major, uint64_t v) except -1:
    """A CBOR head: major type and argument, in the shortest form."""
    cdef unsigned char* q
    cdef int i
    if b.n + 9 > b.cap:
        buf_grow(b, 9)
    q = b.p + b.n
    major <<= 5
    if v < 24:
        q[0] = <unsigned char>(major | v)
        b.n += 1
    elif v <= 0xff:
        q[0] = <unsigned char>(major | 24)
        q[1] = <unsigned char>v
        b.n += 2
    elif v <= 0xffff:
        q[0] = <unsigned char>(major | 25)
        q[1] = <unsigned char>(v >> 8)
        q[2] = <unsigned char>v
        b.n += 3
    elif v <= 0xffffffff:
        q[0] = <unsigned char>(major | 26)
        q[1] = <unsigned char>(v >> 24)
        q[2] = <unsigned char>(v >> 16)
        q[3] = <unsigned char>(v >> 8)
        q[4] = <unsigned char>v
        b.n += 5
    else:
        q[0] = <unsigned char>(major | 27)
        for i in range(8):
            q[1 + i] = <unsigned char>(v >> (56 - 8 * i))
        b.n += 9
    return 0


cdef int half_bits(double d, uint16_t* out) noexcept:
    """The binary16 bits of ``d`` when it is exactly representable there (d finite, not NaN)."""
    cdef double a = fabs(d)
    cdef int e
    cdef double f, m
    cdef uint16_t sign = 0x8000 if d < 0 else 0
    if a == 0.0:
        out[0] = sign
        return 1
    if isinf(d):
        out[0] = sign | 0x7c00
        return 1
    f = frexp(a, &e)  # a = f * 2**e, 0.5 <= f < 1
    if e >= -13:  # normal binary16: a = 1.m * 2**(e-1), e-1 in [-14, 15]
        if e - 1 > 15:
            return 0
        m = ldexp(f, 11)  # 1m as an 11-bit integer when exact
        if m != floor(m):
            return 0
        out[0] = sign | <uint16_t>((e - 1 + 15) << 10) | (<uint16_t>m & 0x3ff)
        return 1
    m = ldexp(a, 24)  # subnormal binary16: a = m * 2**-24, m < 1024
    if m != floor(m) or m >= 1024.0:
        return 0
    out[0] = sign | <uint16_t>m
    return 1


cdef int put_float(Buf* b, double d) except -1:
    cdef uint16_t h
    cdef float f32
    cdef uint32_t u32
    cdef uint64_t u64
    cdef unsigned char* q
    cdef int i
    if d == 0.0:
        d = 0.0  # -0.0 is written as 0.0
    if b.n + 9 > b.cap:
        buf_grow(b, 9)
    q = b.p + b.n
    if half_bits(d, &h):
        q[0] = 0xf9
        q[1] = <unsigned char>(h >> 8)
        q[2] = <unsigned char>h
        b.n += 3
        return 0
    f32 = <float>d
    if <double>f32 == d:
        memcpy(&u32, &f32, 4)
        q[0] = 0xfa
        for i in range(4):
            q[1 + i] = <unsigned char>(u32 >> (24 - 8 * i))
        b.n += 5
        return 0
    memcpy(&u64, &d, 8)
    q[0] = 0xfb
    for i in range(8):
        q[1 + i] = <unsigned char>(u64 >> (56 - 8 * i))
    b.n += 9
    return 0


cdef inline int put_text(Buf* b, object s) except -1:
    cdef Py_ssize_t n
    cdef const char* u
    try:
        u = PyUnicode_AsUTF8AndSize(s, &n)
    except UnicodeError:  # lone surrogates: the general path reports them
        return UNSUPPORTED
    head(b, 3, <uint64_t>n)
    put_bytes(b, u, n)
    return OK


cdef inline int put_int(Buf* b, object v) except -1:
    cdef int overflow = 0
    cdef long long x = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow:
        return UNSUPPORTED  # big ints: cbor2 writes them (head or bignum tag)
    if x >= 0:
        head(b, 0, <uint64_t>x)
    else:
        head(b, 1, <uint64_t>(-1 - x))
    return OK


cdef inline int put_key(Buf* b, object k) except -1:
    cdef type t = type(k)
    if t is str:
        return put_text(b, k)
    if t is int:
        return put_int(b, k)
    if t is bytes:
        head(b, 2, <uint64_t>PyBytes_GET_SIZE(k))
        put_bytes(b, PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k))
        return OK
    return UNSUPPORTED


cdef inline bint key_less(Buf* keys, Py_ssize_t* start, Py_ssize_t i, Py_ssize_t j) noexcept:
    """Encoded key i sorts before key j: shorter first, then bytewise."""
    cdef Py_ssize_t li = start[i + 1] - start[i], lj = start[j + 1] - start[j]
    cdef int c
    if li != lj:
        return li < lj
    c = memcmp(keys.p + start[i], keys.p + start[j], li)
    return c < 0


cdef void merge_sort(Py_ssize_t* order, Py_ssize_t* tmp, Py_ssize_t n, Buf* keys, Py_ssize_t* start) noexcept:
    cdef Py_ssize_t i, j, k, mid, x
    if n < 12:
        for i in range(1, n):
            x = order[i]
            j = i
            while j > 0 and key_less(keys, start, x, order[j - 1]):
                order[j] = order[j - 1]
                j -= 1
            order[j] = x
        return
    mid = n // 2
    merge_sort(order, tmp, mid, keys, start)
    merge_sort(order + mid, tmp, n - mid, keys, start)
    i, j, k = 0, mid, 0
    while i < mid and j < n:
        if key_less(keys, start, order[j], order[i]):
            tmp[k] = order[j]
            j += 1
        else:
            tmp[k] = order[i]
            i += 1
        k += 1
    while i < mid:
        tmp[k] = order[i]
        i += 1
        k += 1
    while j < n:
        tmp[k] = order[j]
        j += 1
        k += 1
    memcpy(order, tmp, n * sizeof(Py_ssize_t))


cdef int put_map(Buf* b, object d, int depth, bint sort) except -1:
    cdef Py_ssize_t n = PyDict_GET_SIZE(d)
    cdef Py_ssize_t pos = 0, i = 0, idx
    cdef PyObject* k
    cdef PyObject* v
    cdef Buf keys
    cdef Py_ssize_t* mem
    cdef Py_ssize_t* start
    cdef Py_ssize_t* order
    cdef Py_ssize_t* tmp
    cdef PyObject** values
    cdef int rc = OK
    head(b, 5, <uint64_t>n)
    if not sort or n < 2:
        while PyDict_Next(d, &pos, &k, &v):
            if put_key(b, <object>k) or put(b, <object>v, depth + 1, sort):
                return UNSUPPORTED
            i += 1
        return OK
    # Encode the keys, sort their encodings, then write key and value pairs in that order.
    mem = <Py_ssize_t*>PyMem_Malloc((4 * n + 1) * sizeof(Py_ssize_t))
    if mem == NULL:
        PyErr_NoMemory()
        return -1
    start, order, tmp, values = mem, mem + n + 1, mem + 2 * n + 1, <PyObject**>(mem + 3 * n + 1)
    buf_init(&keys)
    try:
        while PyDict_Next(d, &pos, &k, &v):
            start[i] = keys.n
            if put_key(&keys, <object>k):
                rc = UNSUPPORTED
                break
            values[i] = v
            order[i] = i
            i += 1
        if rc == OK:
            start[n] = keys.n
            merge_sort(order, tmp, n, &keys, start)
            for i in range(n):
                idx = order[i]
                if i and start[idx + 1] - start[idx] == start[order[i - 1] + 1] - start[order[i - 1]] and \
                        memcmp(keys.p + start[idx], keys.p + start[order[i - 1]], start[idx + 1] - start[idx]) == 0:
                    rc = UNSUPPORTED  # two keys with one encoding (cannot happen for exact types)
                    break
                put_bytes(b, keys.p + start[idx], start[idx + 1] - start[idx])
                if put(b, <object>values[idx], depth + 1, sort):
                    rc = UNSUPPORTED
                    break
    finally:
        buf_free(&keys)
        PyMem_Free(mem)
    return rc


cdef int put(Buf* b, object v, int depth, bint sort) except -1:
    cdef type t = type(v)
    cdef Py_ssize_t n, i
    cdef double d
    if v is None:
        if b.n + 1 > b.cap:
            buf_grow(b, 1)
        b.p[b.n] = 0xf6
        b.n += 1
        return OK
    if t is str:
        return put_text(b, v)
    if t is int:
        return put_int(b, v)
    if t is bytes:
        n = PyBytes_GET_SIZE(v)
        head(b, 2, <uint64_t>n)
        put_bytes(b, PyBytes_AS_STRING(v), n)
        return OK
    if t is bool:
        if b.n + 1 > b.cap:
            buf_grow(b, 1)
        b.p[b.n] = 0xf5 if v is True else 0xf4
        b.n += 1
        return OK
    if t is float:
        d = PyFloat_AS_DOUBLE(v)
        if isnan(d):
            return UNSUPPORTED
        return put_float(b, d)
    if depth >= MAX_DEPTH_C:
        return UNSUPPORTED
    if t is dict:
        return put_map(b, v, depth, sort)
    if t is list or t is tuple:
        n = PySequence_Fast_GET_SIZE(v)
        head(b, 4, <uint64_t>n)
        for i in range(n):
            # the item is held by the sequence; a reducer's value is not mutated while it is encoded
            if put(b, <object>PySequence_Fast_GET_ITEM(v, i), depth + 1, sort):
                return UNSUPPORTED
        return OK
    return UNSUPPORTED


cdef object finish(Buf* b, int rc):
    try:
        if rc != OK:
            return None
        return PyBytes_FromStringAndSize(<char*>b.p, b.n)
    finally:
        buf_free(b)


cdef object write(object value, bint sort):
    cdef Buf b
    cdef int rc
    buf_init(&b)
    try:
        rc = put(&b, value, 0, sort)
    except BaseException:
        buf_free(&b)
        raise
    return finish(&b, rc)


cpdef object encode(object value):
    """Canonical CBOR of ``value``, or ``None`` when it needs the general path."""
    return write(value, True)


def ordered(value):
    """CBOR of a record map whose keys are already in canonical order (written as given).

    Returns ``None`` for a value outside the exact types above.
    """
    return write(value, False)


# Record keys, pre-encoded (text strings), in canonical order.
cdef bytes K_KEY = b"\x63key"
cdef bytes K_KIND = b"\x64kind"
cdef bytes K_EMITS = b"\x65emits"
cdef bytes K_INPUT = b"\x65input"
cdef bytes K_EFFECTS = b"\x67effects"
cdef bytes K_LANE = b"\x67lane_id"
cdef bytes K_REDUCER = b"\x67reducer"
cdef bytes K_EVENT = b"\x68event_id"
cdef bytes K_STATE_HASH = b"\x6astate_hash"
cdef bytes K_SEQ = b"\x63seq"
cdef bytes K_VALUE = b"\x65value"
cdef bytes K_SCHEMA = b"\x66schema"
cdef bytes K_VISIBLE_AT = b"\x6avisible_at"
cdef bytes V_ADMITTED = b"\x6dEventAdmitted"
cdef bytes V_SCHEDULED = b"\x6dStepScheduled"
cdef bytes V_COMMITTED = b"\x6dStepCommitted"


cdef inline int put_raw(Buf* b, bytes s) except -1:
    return put_bytes(b, PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s))


cdef inline int put_uint(Buf* b, object v) except -1:
    if type(v) is not int or v < 0:
        raise ValueError(f"expected an int >= 0, got {v!r:.100}")
    if put_int(b, v):
        raise ValueError(f"{v} is out of the record range")
    return 0


cpdef bytes step_scheduled(object event_id, object reducer, object key, object input, object lane_id=0):
    """The payload of ``StepScheduled`` (keys: key, kind, input, lane_id, reducer, event_id)."""
    cdef Buf b
    if not isinstance(reducer, str):
        raise TypeError(f"reducer must be a str, got {type(reducer).__name__}")
    buf_init(&b)
    try:
        head(&b, 5, 6)
        put_raw(&b, K_KEY)
        if key is not None and type(key) not in (str, int, bytes) or put(&b, key, 0, False):
            raise ValueError(f"cell key {key!r:.100} is outside the record model")
        put_raw(&b, K_KIND)
        put_raw(&b, V_SCHEDULED)
        put_raw(&b, K_INPUT)
        put_uint(&b, input)
        put_raw(&b, K_LANE)
        put_uint(&b, lane_id)
        put_raw(&b, K_REDUCER)
        put_text(&b, reducer)
        put_raw(&b, K_EVENT)
        put_uint(&b, event_id)
        return PyBytes_FromStringAndSize(<char*>b.p, b.n)
    finally:
        buf_free(&b)


cpdef bytes step_committed(object event_id, object state_hash, tuple emits, tuple effects, object lane_id=0):
    """The payload of ``StepCommitted`` (keys: kind, emits, effects, lane_id, event_id, state_hash).

    ``emits`` holds :class:`~aos.records.Emit` and ``effects``
    :class:`~aos.records.Intent` objects (their ``to_wire`` forms are written).
    """
    cdef Buf b
    buf_init(&b)
    try:
        head(&b, 5, 6)
        put_raw(&b, K_KIND)
        put_raw(&b, V_COMMITTED)
        put_raw(&b, K_EMITS)
        head(&b, 4, <uint64_t>len(emits))
        for e in emits:
            head(&b, 4, 2)
            put_text(&b, e.schema)
            put(&b, <bytes?>e.value, 0, False)
        put_raw(&b, K_EFFECTS)
        head(&b, 4, <uint64_t>len(effects))
        for i in effects:
            if put(&b, i.to_wire(), 0, False):
                raise ValueError(f"effect intent {i!r:.200} is outside the record model")
        put_raw(&b, K_LANE)
        put_uint(&b, lane_id)
        put_raw(&b, K_EVENT)
        put_uint(&b, event_id)
        put_raw(&b, K_STATE_HASH)
        if state_hash is None:
            put(&b, None, 0, False)
        else:
            put(&b, <bytes?>state_hash, 0, False)
        return PyBytes_FromStringAndSize(<char*>b.p, b.n)
    finally:
        buf_free(&b)


cpdef bytes event_admitted(object seq, object schema, bytes value, object lane_id=0, object visible_at=None):
    """The payload of ``EventAdmitted`` (keys: seq, kind, value, schema, lane_id, visible_at).

    ``visible_at`` None leaves the key out (records written before it existed).
    """
    cdef Buf b
    if not isinstance(schema, str):
        raise TypeError(f"schema must be a str, got {type(schema).__name__}")
    buf_init(&b)
    try:
        head(&b, 5, 5 if visible_at is None else 6)
        put_raw(&b, K_SEQ)
        put_uint(&b, seq)
        put_raw(&b, K_KIND)
        put_raw(&b, V_ADMITTED)
        put_raw(&b, K_VALUE)
        put(&b, value, 0, False)
        put_raw(&b, K_SCHEMA)
        if put_text(&b, schema):
            raise ValueError(f"schema {schema!r:.100} cannot be written as UTF-8")
        put_raw(&b, K_LANE)
        put_uint(&b, lane_id)
        if visible_at is not None:
            put_raw(&b, K_VISIBLE_AT)
            put_uint(&b, visible_at)
        return PyBytes_FromStringAndSize(<char*>b.p, b.n)
    finally:
        buf_free(&b)


# ------------------------------------------------------------ record kinds
cdef Py_ssize_t skip(const unsigned char* p, Py_ssize_t n, Py_ssize_t at, int depth) noexcept:
    """The offset after the CBOR item at ``at`` (-1 when malformed or cut short)."""
    cdef unsigned int major, ai
    cdef uint64_t arg = 0
    cdef Py_ssize_t i, width
    if at >= n or depth > MAX_DEPTH_C:
        return -1
    major = p[at] >> 5
    ai = p[at] & 31
    at += 1
    if ai < 24:
        arg = ai
    elif ai <= 27:
        width = 1 << (ai - 24)
        if at + width > n:
            return -1
        for i in range(width):
            arg = (arg << 8) | p[at + i]
        at += width
    else:
        return -1  # indefinite lengths and reserved values are not in canonical records
    if major == 2 or major == 3:
        if arg > <uint64_t>(n - at):
            return -1
        return at + <Py_ssize_t>arg
    if major == 4 or major == 5:
        if arg > <uint64_t>(n - at):
            return -1
        for i in range(<Py_ssize_t>arg * (2 if major == 5 else 1)):
            at = skip(p, n, at, depth + 1)
            if at < 0:
                return -1
        return at
    if major == 6:
        return skip(p, n, at, depth + 1)
    return at  # ints, simple values and floats: the head was all of it


cdef dict KIND_NAMES = {}


def record_kind(bytes payload):
    """The ``kind`` of a record payload, read without decoding the rest (``None`` if not found).

    Only a hint for dispatch: every record is still checked by comparison or
    by a strict decode.
    """
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload), at = 1, entries, k, end, vend
    if n < 1 or (p[0] >> 5) != 5 or (p[0] & 31) >= 24:
        return None
    entries = p[0] & 31
    for k in range(entries):
        end = skip(p, n, at, 1)
        if end < 0:
            return None
        if end - at == 5 and memcmp(p + at, b"\x64kind", 5) == 0:
            if end >= n or (p[end] >> 5) != 3:
                return None
            vend = skip(p, n, end, 1)
            if vend < 0:
                return None
            raw = PyBytes_FromStringAndSize(<const char*>(p + end), vend - end)
            name = KIND_NAMES.get(raw)
            if name is None:
                try:
                    name = raw[1 if (p[end] & 31) < 24 else 1 + (1 << ((p[end] & 31) - 24)):].decode("utf-8")
                except UnicodeDecodeError:
                    return None
                if len(KIND_NAMES) < 64:
                    KIND_NAMES[raw] = name
            return name
        at = skip(p, n, end, 1)
        if at < 0:
            return None
    return None
