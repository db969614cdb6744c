# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""The canonical CBOR reader of the step path.

Every step decodes its cell's state and its event; a replay also reads every
record. This reader handles the value model's items (unsigned and negative
ints, byte and text strings, arrays, maps with ``str``, ``int`` or ``bytes``
keys, ``false``, ``true``, ``null`` and floats of the three widths) in C.

``decode(data, strict)`` returns :data:`UNHANDLED` for anything else (tags,
indefinite lengths, undefined and simple values, other map keys, nesting
deeper than the model allows, trailing bytes, invalid UTF-8): the caller then
takes the general path of :mod:`aos.canonical`, which decodes it or raises the
precise error. With ``strict`` the bytes must also be canonical (shortest
heads, map keys in canonical order without duplicates, floats in their
shortest width, no ``NaN``, no ``-0.0``); if they are not, the result is
:data:`UNHANDLED` too, and the general path says what is wrong.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.long cimport PyLong_FromUnsignedLongLong, PyLong_FromLongLong
from cpython.float cimport PyFloat_FromDouble
from libc.string cimport memcpy, memcmp
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.math cimport ldexp, isnan, frexp, floor, INFINITY, NAN


cdef extern from "Python.h":
    ctypedef struct PyObject
    object PyList_New(Py_ssize_t)
    void PyList_SET_ITEM(object, Py_ssize_t, object)
    object PyTuple_New(Py_ssize_t)
    void PyTuple_SET_ITEM(object, Py_ssize_t, object)
    PyObject* PyTuple_GET_ITEM(object, Py_ssize_t)
    void Py_INCREF(object)
    void Py_DECREF(object)
    void Py_XDECREF(PyObject*)


from aos._core.layout cimport (
    Layout, Piece, load_kinds, MAX_KINDS, MAX_SLOTS, MAX_VARIANTS, T_UINT, T_TICKET, T_INT, T_BOOL, T_TEXT, T_OPT_TEXT, T_BYTES,
    T_OPT_BYTES, T_HASH, T_OPT_HASH, T_KEY,
)


cdef enum:
    MAX_DEPTH_C = 400  # deepest container nesting in the model (aos.canonical.MAX_DEPTH)

MAX_DEPTH = MAX_DEPTH_C

__all__ = ["decode", "UNHANDLED", "record_fields", "event_admitted_fields", "MAX_DEPTH"]


class _Unhandled:
    """The marker of a value this reader leaves to the general path."""

    __slots__ = ()

    def __repr__(self):
        return "UNHANDLED"


UNHANDLED = _Unhandled()


cdef struct Reader:
    const unsigned char* p
    Py_ssize_t n
    Py_ssize_t at
    bint strict
    bint bad  # set when the item is outside what this reader handles


cdef inline int read_head(Reader* r, unsigned int* major, uint64_t* arg) noexcept:
    """Read a head; 0 on success, -1 when bad (flagged)."""
    cdef unsigned int ai, i, width
    cdef uint64_t v = 0
    if r.at >= r.n:
        r.bad = True
        return -1
    major[0] = r.p[r.at] >> 5
    ai = r.p[r.at] & 31
    r.at += 1
    if ai < 24:
        arg[0] = ai
        return 0
    if ai > 27:
        r.bad = True  # indefinite lengths and reserved values
        return -1
    width = 1u << (ai - 24)
    if r.at + width > r.n:
        r.bad = True
        return -1
    for i in range(width):
        v = (v << 8) | r.p[r.at + i]
    r.at += width
    if r.strict and major[0] != 7:
        # shortest form: the argument must not fit the next narrower width
        if (ai == 24 and v < 24) or (ai == 25 and v <= 0xff) or (ai == 26 and v <= 0xffff) \
                or (ai == 27 and v <= 0xffffffff):
            r.bad = True
            return -1
    arg[0] = v
    return 0


cdef double half_to_double(uint16_t h) noexcept:
    cdef int e = (h >> 10) & 0x1f
    cdef int m = h & 0x3ff
    cdef double v
    if e == 0:
        v = ldexp(<double>m, -24)
    elif e == 31:
        v = INFINITY if m == 0 else NAN
    else:
        v = ldexp(<double>(m + 1024), e - 25)
    return -v if (h & 0x8000) else v


cdef object read_item(Reader* r, int depth):
    """The next item (None with r.bad set when it is not handled)."""
    cdef unsigned int major
    cdef uint64_t arg
    cdef Py_ssize_t i, n, start, kstart, kend, prev_start = -1, prev_len = 0, klen
    cdef uint32_t u32
    cdef uint64_t u64
    cdef float f32
    cdef double d
    cdef int c
    cdef unsigned char b0
    cdef list items
    cdef dict m
    start = r.at
    if read_head(r, &major, &arg) < 0:
        return None
    if major == 0:
        return PyLong_FromUnsignedLongLong(arg)
    if major == 1:
        if arg < (<uint64_t>1 << 63):
            return PyLong_FromLongLong(-1 - <long long>arg)
        return -1 - PyLong_FromUnsignedLongLong(arg)
    if major == 2 or major == 3:
        if arg > <uint64_t>(r.n - r.at):
            r.bad = True
            return None
        n = <Py_ssize_t>arg
        i = r.at
        r.at += n
        if major == 2:
            return PyBytes_FromStringAndSize(<const char*>(r.p + i), n)
        try:
            return PyUnicode_DecodeUTF8(<const char*>(r.p + i), n, NULL)
        except UnicodeDecodeError:
            r.bad = True
            return None
    if major == 4 or major == 5:
        if depth >= MAX_DEPTH_C or arg > <uint64_t>(r.n - r.at):  # every item takes a byte at least
            r.bad = True
            return None
        n = <Py_ssize_t>arg
        if major == 4:
            items = PyList_New(n)
            for i in range(n):
                v = read_item(r, depth + 1)
                if r.bad:
                    # fill the rest so the half-built list can be freed
                    for c in range(i, n):
                        Py_INCREF(None)
                        PyList_SET_ITEM(items, c, None)
                    return None
                Py_INCREF(v)
                PyList_SET_ITEM(items, i, v)
            return items
        m = {}
        for i in range(n):
            kstart = r.at
            if kstart >= r.n:
                r.bad = True
                return None
            b0 = r.p[kstart] >> 5
            if b0 > 3:  # keys are ints, byte strings or text strings
                r.bad = True
                return None
            k = read_item(r, depth + 1)
            if r.bad:
                return None
            kend = r.at
            klen = kend - kstart
            if r.strict and prev_start >= 0:
                # canonical order: shorter encodings first, then bytewise; no duplicates
                if klen < prev_len:
                    r.bad = True
                    return None
                if klen == prev_len:
                    c = memcmp(r.p + prev_start, r.p + kstart, klen)
                    if c >= 0:
                        r.bad = True
                        return None
            prev_start, prev_len = kstart, klen
            v = read_item(r, depth + 1)
            if r.bad:
                return None
            if k in m:  # a duplicate key (only possible when not strict)
                r.bad = True
                return None
            m[k] = v
        return m
    if major == 7:
        b0 = r.p[start] & 31
        if b0 == 20:
            return False
        if b0 == 21:
            return True
        if b0 == 22:
            return None
        if b0 == 25:
            d = half_to_double(<uint16_t>arg)
        elif b0 == 26:
            u32 = <uint32_t>arg
            memcpy(&f32, &u32, 4)
            d = <double>f32
            if r.strict and not isnan(d) and <double>(<float>d) == d and _fits_half(d):
                r.bad = True
                return None
        elif b0 == 27:
            u64 = arg
            memcpy(&d, &u64, 8)
            if r.strict and not isnan(d) and <double>(<float>d) == d:
                r.bad = True  # a single would do
                return None
        else:
            r.bad = True  # undefined and simple values
            return None
        if isnan(d) or (d == 0.0 and (r.p[start + 1] & 0x80)):
            if r.strict or isnan(d):
                r.bad = True  # NaN is not in the model; -0.0 is written as 0.0
                return None
        return PyFloat_FromDouble(d)
    r.bad = True  # tags
    return None


cdef bint _fits_half(double d) noexcept:
    """Whether a finite ``d`` is exactly a binary16 value."""
    cdef double a = -d if d < 0 else d
    cdef double m
    cdef int e
    if a == 0.0 or a == INFINITY:
        return True
    if a > 65504.0:
        return False
    if a >= ldexp(1.0, -14):
        frexp(a, &e)
        m = ldexp(a, 11 - e)
        return m == floor(m)
    m = ldexp(a, 24)
    return m == <double>(<long long>m)


cdef inline void reader_init(Reader* r, bytes data, bint strict) noexcept:
    r.p = <const unsigned char*>PyBytes_AS_STRING(data)
    r.n = PyBytes_GET_SIZE(data)
    r.at = 0
    r.strict = strict
    r.bad = False


cpdef object decode(bytes data, bint strict=False):
    """The value of ``data``, or :data:`UNHANDLED` (see the module docstring)."""
    cdef Reader r
    reader_init(&r, data, strict)
    value = read_item(&r, 0)
    if r.bad or r.at != r.n:
        return UNHANDLED
    return value


cdef inline bint expect(Reader* r, const char* s, Py_ssize_t n) noexcept:
    if r.at + n > r.n or memcmp(r.p + r.at, s, n) != 0:
        return False
    r.at += n
    return True


# ------------------------------------------------------------ records
# Record layouts (aos/_core/layout.pxd) come from aos/schema.py, loaded once at import: per field, in wire
# order, the constant bytes before it (map head, keys, the kind entry), then a trailing literal.
cdef Layout LAYOUTS[MAX_KINDS][MAX_VARIANTS]  # a kind's layout per subset of its optional fields
cdef int N_VARIANTS[MAX_KINDS]
cdef int N_KINDS = 0
cdef list _KEEP = []  # the bytes the layouts point into
cdef int K_ADMITTED
cdef int V_VISIBLE  # the variant of EventAdmitted's layouts with visible_at as its only optional field
cdef int A_SEQ, A_SCHEMA, A_VALUE, A_VISIBLE, A_ORIGIN, A_KEY  # EventAdmitted's fields that event_admitted_fields returns


def _load_schema():
    global N_KINDS, K_ADMITTED, A_SEQ, A_SCHEMA, A_VALUE, A_VISIBLE, A_ORIGIN, A_KEY, V_VISIBLE
    from aos import schema

    N_KINDS = load_kinds(&LAYOUTS[0][0], N_VARIANTS, _KEEP)
    K_ADMITTED = schema.KIND_INDEX["EventAdmitted"]
    names = schema.kind("EventAdmitted").names
    A_SEQ, A_SCHEMA, A_VALUE = names.index("seq"), names.index("schema"), names.index("value")
    A_VISIBLE = names.index("visible_at")
    A_ORIGIN = names.index("origin")
    A_KEY = names.index("idempotency_key")
    V_VISIBLE = 1 << schema.kind("EventAdmitted").optional.index(A_VISIBLE)


_load_schema()


cdef inline bint of_type(int t, object v) noexcept:
    """Whether a decoded ``v`` has the Python type of field type ``t`` (values are checked by the caller)."""
    if t == T_UINT or t == T_TICKET or t == T_INT:
        return type(v) is int
    elif t == T_TEXT:
        return type(v) is str
    elif t == T_BYTES or t == T_HASH:
        return type(v) is bytes
    elif t == T_KEY:
        return v is None or type(v) is str or type(v) is int or type(v) is bytes
    elif t == T_OPT_TEXT:
        return v is None or type(v) is str
    elif t == T_OPT_BYTES or t == T_OPT_HASH:
        return v is None or type(v) is bytes
    elif t == T_BOOL:
        return type(v) is bool
    return type(v) is list  # emits, intents, names, pairs, counts


cdef inline void release(PyObject** vals, int n) noexcept:
    cdef int i
    for i in range(n):
        Py_XDECREF(vals[i])
        vals[i] = NULL


cdef bint read_layout(Layout* lay, bytes payload, PyObject** vals) except -1:
    """Fill ``vals`` with the fields (owned references, declaration order; None for an optional field the
    layout leaves out) of a payload laid out as ``lay``; False (``vals`` left empty) when it is not."""
    cdef Reader r
    cdef Piece* p
    cdef int i
    for i in range(lay.nfields):
        vals[i] = NULL
    reader_init(&r, payload, True)
    for i in range(lay.npieces):
        p = &lay.pieces[i]
        if not expect(&r, p.lit, p.lit_len):
            release(vals, lay.nfields)
            return False
        v = read_item(&r, 1)
        if r.bad or not of_type(p.type, v):
            release(vals, lay.nfields)
            return False
        Py_INCREF(v)
        vals[p.field] = <PyObject*>v
    if not expect(&r, lay.tail, lay.tail_len) or r.at != r.n:
        release(vals, lay.nfields)
        return False
    for i in range(lay.opt_first, lay.nfields):
        if vals[i] == NULL:
            Py_INCREF(None)
            vals[i] = <PyObject*>None
    return True


cdef bint read_values(int kind, bytes payload, PyObject** vals) except -1:
    """Fill ``vals`` as :func:`read_layout` from whichever layout of the kind ``payload`` has (records written
    now have every optional field: that layout is tried first)."""
    cdef int v
    for v in range(N_VARIANTS[kind] - 1, -1, -1):
        if read_layout(&LAYOUTS[kind][v], payload, vals):
            return True
    return False


cpdef object record_fields(int kind, bytes payload):
    """The field values (declaration order) of a record of kind index ``kind`` laid out as aos writes it.

    ``None`` when ``payload`` is not exactly that layout (keys, order, kind,
    canonical items of the declared Python types): the caller then decodes
    it in full. Values are not range-checked: callers re-make the record
    from them and compare bytes.
    """
    cdef PyObject* vals[MAX_SLOTS]
    cdef int i, n
    if kind < 0 or kind >= N_KINDS:
        raise ValueError(f"no record kind has index {kind}")
    if not read_values(kind, payload, vals):
        return None
    n = LAYOUTS[kind][0].nfields
    out = PyTuple_New(n)
    for i in range(n):
        PyTuple_SET_ITEM(out, i, <object>vals[i])  # steals the reference read_values took
    return out


cpdef object event_admitted_fields(bytes payload):
    """``(seq, schema, value, visible_at)`` of an ``EventAdmitted`` payload laid out as aos writes it, else
    ``None``.

    ``visible_at`` is None in a record written before the field existed. The
    caller re-makes the payload from these fields and compares, so this only
    has to find them; anything unexpected returns ``None`` (and the record is
    then decoded in full). An event with an ``origin`` (a lane world's) is left to the full decode too, and so
    is one with an ``idempotency_key`` (``World.submit(..., idempotency_key=)``).
    """
    cdef PyObject* vals[MAX_SLOTS]
    # Only the layouts without origin and key qualify: the one with visible_at (every record written now),
    # then the one without (records from before it); the others are not even read.
    if not read_layout(&LAYOUTS[K_ADMITTED][V_VISIBLE], payload, vals) \
            and not read_layout(&LAYOUTS[K_ADMITTED][0], payload, vals):
        return None
    out = (<object>vals[A_SEQ], <object>vals[A_SCHEMA], <object>vals[A_VALUE], <object>vals[A_VISIBLE])
    release(vals, LAYOUTS[K_ADMITTED][0].nfields)
    return out
