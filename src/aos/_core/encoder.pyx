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

Record payloads are written here too, from the layouts :mod:`aos.schema`
declares (loaded at import): :func:`write_record` and :func:`record_payload`
for any kind, and the step path's own entry points :func:`event_admitted`,
:func:`step_scheduled` and :func:`step_committed`. :func:`ordered` writes a
map whose keys are already in canonical order as given.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.exc cimport PyErr_NoMemory
from libc.string cimport memcpy, memcmp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.math cimport frexp, ldexp, isnan, isinf, fabs, floor

from aos._core.layout cimport (
    Layout, Piece, load_kinds, load_layout, MAX_KINDS, MAX_SLOTS, MAX_VARIANTS, T_KIND, T_UINT, T_TICKET, T_INT, T_BOOL, T_TEXT, T_OPT_TEXT, T_BYTES,
    T_OPT_BYTES, T_HASH, T_OPT_HASH, T_KEY, T_EMITS, T_INTENTS, T_NAMES, T_PAIRS, T_COUNTS, T_UINTS,
)


cdef extern from "Python.h":
    ctypedef struct PyObject
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1
    Py_ssize_t PySequence_Fast_GET_SIZE(object)
    PyObject* PySequence_Fast_GET_ITEM(object, Py_ssize_t)
    Py_ssize_t PyDict_GET_SIZE(object)
    int PyDict_Next(object, Py_ssize_t*, PyObject**, PyObject**)
    double PyFloat_AS_DOUBLE(object)
    PyObject** PySequence_Fast_ITEMS(object)
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    void* Py_TYPE(object)


cdef enum:
    MAX_DEPTH_C = 400  # deepest container nesting in the model (aos.canonical.MAX_DEPTH)
    OK = 0
    UNSUPPORTED = 1

MAX_DEPTH = MAX_DEPTH_C

__all__ = ["encode", "ordered", "event_admitted", "step_scheduled", "step_committed", "write_record", "record_payload",
           "bind_record_classes", "record_kind", "MAX_DEPTH"]


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


# ------------------------------------------------------------ records
# Every record kind's layout (key bytes, wire order, field types) comes from aos/schema.py, loaded once at
# import; the writers below follow the layouts and spell no key of their own.
cdef Layout LAYOUTS[MAX_KINDS][MAX_VARIANTS]  # a kind's layout per subset of its optional fields
cdef int N_VARIANTS[MAX_KINDS]
cdef Layout EMIT_LAYOUT
cdef Layout INTENT_LAYOUT
cdef int N_KINDS = 0
cdef list _KEEP = []  # the bytes the layouts point into
cdef tuple EMIT_ATTRS  # the attribute names of an Emit, in field order
cdef tuple INTENT_ATTRS
cdef list _BOUND = []  # the record classes bound to layouts (kept alive)
cdef enum:
    MEMBER_OBJECT_EX = 16  # the member type of a __slots__ entry (T_OBJECT_EX, Py_T_OBJECT_EX)
cdef bytes KIND_KEY  # the encoded "kind" key
cdef bytes ADMITTED_KIND, SCHEDULED_KIND, COMMITTED_KIND  # encoded kind values (kind_code, record_kind)
cdef int K_ADMITTED, K_SCHEDULED, K_COMMITTED

# The step writers' arguments follow their kinds' declared fields; the import fails when they drift apart.
_WRITER_FIELDS = {
    "EventAdmitted": ("event_admitted", ("seq", "schema", "value", "lane_id", "visible_at", "origin",
                                         "idempotency_key")),
    "StepScheduled": ("step_scheduled", ("event_id", "reducer", "key", "input", "lane_id")),
    "StepCommitted": ("step_committed", ("event_id", "state_hash", "emits", "effects", "lane_id")),
}


def _load_schema():
    global N_KINDS, EMIT_ATTRS, INTENT_ATTRS, KIND_KEY, K_ADMITTED, K_SCHEDULED, K_COMMITTED, ADMITTED_KIND, \
        SCHEDULED_KIND, COMMITTED_KIND
    from aos import schema

    N_KINDS = load_kinds(&LAYOUTS[0][0], N_VARIANTS, _KEEP)
    load_layout(&EMIT_LAYOUT, schema.EMIT, 0, _KEEP)
    load_layout(&INTENT_LAYOUT, schema.INTENT, 0, _KEEP)
    EMIT_ATTRS = schema.EMIT.names
    INTENT_ATTRS = schema.INTENT.names
    KIND_KEY = schema.text_key(schema.KIND_FIELD)
    ADMITTED_KIND = schema.text_key("EventAdmitted")
    SCHEDULED_KIND = schema.text_key("StepScheduled")
    COMMITTED_KIND = schema.text_key("StepCommitted")
    for name, (writer, fields) in _WRITER_FIELDS.items():
        if schema.kind(name).names != fields:
            raise ImportError(f"aos.schema declares {name} with fields {schema.kind(name).names}, but the C "
                              f"writer {writer}() takes {fields}: change them together")
    K_ADMITTED = schema.KIND_INDEX["EventAdmitted"]
    K_SCHEDULED = schema.KIND_INDEX["StepScheduled"]
    K_COMMITTED = schema.KIND_INDEX["StepCommitted"]


_load_schema()


cdef int bind(Layout* lay, object cls, tuple names) except -1:
    """Read fields of ``cls`` instances straight from their slots (``cls``: a dataclass with ``slots=True``)."""
    import types

    cdef int i
    cdef PyMemberDef* m
    for i in range(len(names)):
        d = cls.__dict__.get(names[i])
        if type(d) is not types.MemberDescriptorType:
            raise TypeError(f"{cls.__name__}.{names[i]} is not a slot")
        m = (<PyMemberDescrObject*><PyObject*>d).d_member
        if m.type != MEMBER_OBJECT_EX:
            raise TypeError(f"{cls.__name__}.{names[i]} is not an object slot")
        lay.offsets[i] = m.offset
    _BOUND.append(cls)
    lay.cls = <void*>cls
    return 0


def bind_record_classes(dict classes, emit, intent):
    """Bind the record classes (``{kind name: class}``) and the Emit and Intent classes (aos.records calls it).

    The writers then read the fields of these classes' instances straight
    from their slots, in the declared order.
    """
    from aos import schema

    for name, cls in classes.items():
        k = schema.KIND_INDEX[name]
        bind(&LAYOUTS[k][0], cls, schema.KINDS[k].names)
    bind(&EMIT_LAYOUT, emit, schema.EMIT.names)
    bind(&INTENT_LAYOUT, intent, schema.INTENT.names)


cdef inline bint read_slots(Layout* lay, object obj, PyObject** values) noexcept:
    """The fields of ``obj``, an instance of the layout's bound class, borrowed (False: one is unset)."""
    cdef int i
    cdef char* base = <char*><PyObject*>obj
    cdef PyObject* v
    for i in range(lay.nfields):
        v = (<PyObject**>(base + lay.offsets[i]))[0]
        if v == NULL:
            return False
        values[i] = v
    return True


cdef inline int put_none(Buf* b) except -1:
    if b.n + 1 > b.cap:
        buf_grow(b, 1)
    b.p[b.n] = 0xf6
    b.n += 1
    return OK


cdef inline int put_raw_bytes(Buf* b, object v) except -1:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(v)
    head(b, 2, <uint64_t>n)
    put_bytes(b, PyBytes_AS_STRING(v), n)
    return OK


cdef int put_pairs(Buf* b, object v, bint text_second) except -1:
    """``[[text, text], ...]`` (or ``[[text, int], ...]``) from a tuple or list of 2-tuples or lists."""
    cdef Py_ssize_t n, i
    cdef type t = type(v)
    if t is not tuple and t is not list:
        return UNSUPPORTED
    n = PySequence_Fast_GET_SIZE(v)
    head(b, 4, <uint64_t>n)
    for i in range(n):
        item = <object>PySequence_Fast_GET_ITEM(v, i)
        t = type(item)
        if (t is not tuple and t is not list) or PySequence_Fast_GET_SIZE(item) != 2:
            return UNSUPPORTED
        first = <object>PySequence_Fast_GET_ITEM(item, 0)
        second = <object>PySequence_Fast_GET_ITEM(item, 1)
        head(b, 4, 2)
        if type(first) is not str or put_text(b, first):
            return UNSUPPORTED
        if text_second:
            if type(second) is not str or put_text(b, second):
                return UNSUPPORTED
        elif type(second) is not int or put_int(b, second):
            return UNSUPPORTED
    return OK


cdef int put_parts(Buf* b, Layout* lay, tuple attrs, object v) except -1:
    """A tuple (or list) of emits or intents: each an array or a map of its fields, as laid out."""
    cdef Py_ssize_t n, i
    cdef int j
    cdef PyObject* fields[MAX_SLOTS]
    if type(v) is not tuple and type(v) is not list:
        return UNSUPPORTED
    n = PySequence_Fast_GET_SIZE(v)
    head(b, 4, <uint64_t>n)
    for i in range(n):
        item = <object>PySequence_Fast_GET_ITEM(v, i)
        held = None
        if <void*>Py_TYPE(item) != lay.cls or not read_slots(lay, item, fields):
            held = tuple([getattr(item, name) for name in attrs])  # another type with these attributes
            for j in range(lay.nfields):
                fields[j] = PySequence_Fast_GET_ITEM(held, j)
        if put_record(b, lay, fields) >= 0:
            return UNSUPPORTED
    return OK


cdef int put_field(Buf* b, int t, object v) except -1:
    """One field of a record: OK, or UNSUPPORTED when ``v`` is outside the field's type."""
    cdef int overflow = 0
    cdef long long x
    cdef Py_ssize_t i, n
    if t == T_UINT or t == T_TICKET:
        if type(v) is not int:
            return UNSUPPORTED
        x = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow or x < 0:
            return UNSUPPORTED
        head(b, 0, <uint64_t>x)
        return OK
    elif t == T_TEXT:
        return put_text(b, v) if type(v) is str else UNSUPPORTED
    elif t == T_KEY:
        return put_none(b) if v is None else put_key(b, v)
    elif t == T_BYTES:
        return put_raw_bytes(b, v) if type(v) is bytes else UNSUPPORTED
    elif t == T_HASH or t == T_OPT_HASH:
        if v is None and t == T_OPT_HASH:
            return put_none(b)
        if type(v) is not bytes or PyBytes_GET_SIZE(v) != 32:
            return UNSUPPORTED
        return put_raw_bytes(b, v)
    elif t == T_EMITS:
        return put_parts(b, &EMIT_LAYOUT, EMIT_ATTRS, v)
    elif t == T_INTENTS:
        return put_parts(b, &INTENT_LAYOUT, INTENT_ATTRS, v)
    elif t == T_OPT_TEXT:
        if v is None:
            return put_none(b)
        return put_text(b, v) if type(v) is str else UNSUPPORTED
    elif t == T_OPT_BYTES:
        if v is None:
            return put_none(b)
        return put_raw_bytes(b, v) if type(v) is bytes else UNSUPPORTED
    elif t == T_INT:
        return put_int(b, v) if type(v) is int else UNSUPPORTED
    elif t == T_BOOL:
        if type(v) is not bool:
            return UNSUPPORTED
        if b.n + 1 > b.cap:
            buf_grow(b, 1)
        b.p[b.n] = 0xf5 if v is True else 0xf4
        b.n += 1
        return OK
    elif t == T_NAMES:
        if type(v) is not tuple and type(v) is not list:
            return UNSUPPORTED
        n = PySequence_Fast_GET_SIZE(v)
        head(b, 4, <uint64_t>n)
        for i in range(n):
            item = <object>PySequence_Fast_GET_ITEM(v, i)
            if type(item) is not str or put_text(b, item):
                return UNSUPPORTED
        return OK
    elif t == T_PAIRS:
        return put_pairs(b, v, True)
    elif t == T_COUNTS:
        return put_pairs(b, v, False)
    elif t == T_UINTS:
        if type(v) is not tuple and type(v) is not list:
            return UNSUPPORTED
        n = PySequence_Fast_GET_SIZE(v)
        head(b, 4, <uint64_t>n)
        for i in range(n):
            item = <object>PySequence_Fast_GET_ITEM(v, i)
            if type(item) is not int:
                return UNSUPPORTED
            x = PyLong_AsLongLongAndOverflow(item, &overflow)
            if overflow or x < 0:
                return UNSUPPORTED
            head(b, 0, <uint64_t>x)
        return OK
    return UNSUPPORTED


cdef int put_record(Buf* b, Layout* lay, PyObject** values) except -2:
    """Write a record (or part) whose field values are ``values`` (declaration order).

    Returns -1, or the index of the field outside its type.
    """
    cdef int i
    cdef Piece* p
    for i in range(lay.npieces):
        p = &lay.pieces[i]
        put_bytes(b, p.lit, p.lit_len)
        if put_field(b, p.type, <object>values[p.field]):
            return p.field
    if lay.tail_len:
        put_bytes(b, lay.tail, lay.tail_len)
    return -1


def _field_error(int kind, int field, value):
    """The error of a step writer given a value outside its field's type."""
    from aos import schema

    k = schema.KINDS[kind]
    f = k.fields[field]
    python = {"uint": int, "ticket": int, "int": int, "bool": bool, "text": str, "text?": (str, type(None)),
              "bytes": bytes, "bytes?": (bytes, type(None)), "hash": bytes, "hash?": (bytes, type(None)),
              "key": (type(None), str, int, bytes)}.get(f.type, (tuple, list))
    cls = ValueError if type(value) in (python if isinstance(python, tuple) else (python,)) else TypeError
    raise cls(f"{k.name}.{f.name}: {value!r:.100} is outside the record model (a {f.type})")


cdef object record_bytes(int kind, PyObject** values, bint strict):
    """The payload of a record; when a value is outside its field's type, None (or, ``strict``, an error)."""
    cdef Buf b
    cdef int bad, i
    cdef Layout* lay = &LAYOUTS[kind][0]
    cdef int variant = 0
    for i in range(lay.opt_first, lay.nfields):  # the optional fields it has pick the layout
        if values[i] != <PyObject*>None:
            variant |= 1 << (i - lay.opt_first)
    buf_init(&b)
    try:
        bad = put_record(&b, &LAYOUTS[kind][variant], values)
        if bad < 0:
            return PyBytes_FromStringAndSize(<char*>b.p, b.n)
    finally:
        buf_free(&b)
    if strict:
        _field_error(kind, bad, <object>values[bad])
    return None


cpdef object write_record(int kind, tuple values):
    """The payload of a record of kind index ``kind`` (aos.schema.KIND_INDEX) with field ``values``.

    ``values`` are in the kind's declaration order. Returns ``None`` when a
    value is outside its field's type (an int beyond 64 bits, say): the
    caller then takes the general path.
    """
    if kind < 0 or kind >= N_KINDS:
        raise ValueError(f"no record kind has index {kind}")
    if len(values) != LAYOUTS[kind][0].nfields:
        raise ValueError(f"record kind {kind} has {LAYOUTS[kind][0].nfields} fields, got {len(values)} values")
    return record_bytes(kind, PySequence_Fast_ITEMS(values), False)


cpdef object record_payload(object record):
    """The payload of a record object of a bound class, else ``None`` (as :func:`write_record`)."""
    cdef void* cls = <void*>Py_TYPE(record)
    cdef PyObject* values[MAX_SLOTS]
    cdef int k
    for k in range(N_KINDS):
        if LAYOUTS[k][0].cls == cls:
            if not read_slots(&LAYOUTS[k][0], record, values):
                return None
            return record_bytes(k, values, False)
    return None


cpdef bytes step_scheduled(object event_id, object reducer, object key, object input, object lane_id=0):
    """The payload of ``StepScheduled``; ``TypeError`` or ``ValueError`` for a value outside the record model."""
    cdef PyObject* v[5]
    v[0] = <PyObject*>event_id
    v[1] = <PyObject*>reducer
    v[2] = <PyObject*>key
    v[3] = <PyObject*>input
    v[4] = <PyObject*>lane_id
    return record_bytes(K_SCHEDULED, v, True)


cpdef bytes step_committed(object event_id, object state_hash, tuple emits, tuple effects, object lane_id=0):
    """The payload of ``StepCommitted``; errors as :func:`step_scheduled`.

    ``emits`` holds :class:`~aos.records.Emit` and ``effects``
    :class:`~aos.records.Intent` objects.
    """
    cdef PyObject* v[5]
    v[0] = <PyObject*>event_id
    v[1] = <PyObject*>state_hash
    v[2] = <PyObject*>emits
    v[3] = <PyObject*>effects
    v[4] = <PyObject*>lane_id
    return record_bytes(K_COMMITTED, v, True)


cpdef bytes event_admitted(object seq, object schema, bytes value, object lane_id=0, object visible_at=None,
                           object origin=None, object idempotency_key=None):
    """The payload of ``EventAdmitted``; errors as :func:`step_scheduled`.

    ``visible_at`` None leaves the field out (records written before it existed); so does ``origin`` None
    (an event no lane or fleet client numbered), and ``idempotency_key`` None (an event submitted without one).
    """
    cdef PyObject* v[7]
    v[0] = <PyObject*>seq
    v[1] = <PyObject*>schema
    v[2] = <PyObject*>value
    v[3] = <PyObject*>lane_id
    v[4] = <PyObject*>visible_at
    v[5] = <PyObject*>origin
    v[6] = <PyObject*>idempotency_key
    return record_bytes(K_ADMITTED, v, True)


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


cdef Py_ssize_t kind_value_at(const unsigned char* p, Py_ssize_t n, Py_ssize_t* value_end) noexcept:
    """Where the text value of a record's ``kind`` field starts (its end in ``value_end``); -1 if not found."""
    cdef Py_ssize_t at = 1, entries, k, end, vend
    if n < 1 or (p[0] >> 5) != 5 or (p[0] & 31) >= 24:
        return -1
    entries = p[0] & 31
    for k in range(entries):
        end = skip(p, n, at, 1)
        if end < 0:
            return -1
        if end - at == PyBytes_GET_SIZE(KIND_KEY) and memcmp(p + at, PyBytes_AS_STRING(KIND_KEY), end - at) == 0:
            if end >= n or (p[end] >> 5) != 3:
                return -1
            vend = skip(p, n, end, 1)
            if vend < 0:
                return -1
            value_end[0] = vend
            return end
        at = skip(p, n, end, 1)
        if at < 0:
            return -1
    return -1


cdef int kind_code(bytes payload) noexcept:
    """:data:`KIND_ADMITTED`, :data:`KIND_SCHEDULED`, :data:`KIND_COMMITTED`, :data:`KIND_OTHER` (another
    kind) or :data:`KIND_NONE` (no kind found): the kinds of a step and an admission, most of any journal, told
    apart without making an object (the commit loops' dispatch)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(payload)
    cdef Py_ssize_t vend = 0
    cdef Py_ssize_t at = kind_value_at(p, PyBytes_GET_SIZE(payload), &vend)
    if at < 0:
        return KIND_NONE
    cdef Py_ssize_t n = vend - at
    if n == PyBytes_GET_SIZE(SCHEDULED_KIND) and memcmp(p + at, PyBytes_AS_STRING(SCHEDULED_KIND), n) == 0:
        return KIND_SCHEDULED
    if n == PyBytes_GET_SIZE(COMMITTED_KIND) and memcmp(p + at, PyBytes_AS_STRING(COMMITTED_KIND), n) == 0:
        return KIND_COMMITTED
    if n == PyBytes_GET_SIZE(ADMITTED_KIND) and memcmp(p + at, PyBytes_AS_STRING(ADMITTED_KIND), n) == 0:
        return KIND_ADMITTED
    return KIND_OTHER


def record_kind(bytes payload):
    """The ``kind`` of a record payload, read without decoding the rest (``None`` if not found).

    Only a hint for dispatch: every record is still checked by comparison or
    by a strict decode.
    """
    cdef int code = kind_code(payload)
    if code == KIND_SCHEDULED:
        return "StepScheduled"
    if code == KIND_COMMITTED:
        return "StepCommitted"
    if code == KIND_ADMITTED:
        return "EventAdmitted"
    if code == KIND_NONE:
        return None
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(payload)
    cdef Py_ssize_t vend = 0
    cdef Py_ssize_t end = kind_value_at(p, PyBytes_GET_SIZE(payload), &vend)
    cdef Py_ssize_t n = vend - end
    raw = PyBytes_FromStringAndSize(<const char*>(p + end), n)
    name = KIND_NAMES.get(raw)
    if name is None:
        try:
            name = raw[1 if (p[end] & 31) < 24 else 1 + (1 << ((p[end] & 31) - 24)):].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if len(KIND_NAMES) < 64:
            KIND_NAMES[raw] = name
    return name
