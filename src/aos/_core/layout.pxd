# cython: language_level=3
"""Record layouts in C, built at import from the one declaration in ``aos/schema.py``.

The writer (encoder.pyx) and the reader (decoder.pyx) share these types and
``load_layout``; neither spells a record key or a field order of its own.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE


cdef enum FieldType:
    T_KIND = 0  # the ``kind`` entry (its value is the layout's pre-encoded kind)
    T_UINT
    T_TICKET
    T_INT
    T_BOOL
    T_TEXT
    T_OPT_TEXT
    T_BYTES
    T_OPT_BYTES
    T_HASH
    T_OPT_HASH
    T_KEY
    T_EMITS
    T_INTENTS
    T_NAMES
    T_PAIRS
    T_COUNTS


cdef enum:
    MAX_SLOTS = 23  # a map of up to 23 entries has a one-byte head
    MAX_KINDS = 64


cdef struct Slot:
    const char* key  # the encoded map key
    Py_ssize_t key_len
    int field  # index into the kind's fields (declaration order); -1 for ``kind``
    int type


cdef struct Layout:
    int n  # map entries, ``kind`` included (or array items for an array part)
    int nfields
    bint as_map
    const char* kind  # the encoded kind name (NULL for a part)
    Py_ssize_t kind_len
    Slot slots[MAX_SLOTS]
    void* cls  # the bound record class (a borrowed type object; NULL until bound)
    Py_ssize_t offsets[MAX_SLOTS]  # where each field's slot lies in an instance of ``cls``


cdef inline int type_code(str name) except -1:
    """The C type of a schema field type (aos.schema.TYPES)."""
    if name == "uint": return T_UINT
    if name == "ticket": return T_TICKET
    if name == "int": return T_INT
    if name == "bool": return T_BOOL
    if name == "text": return T_TEXT
    if name == "text?": return T_OPT_TEXT
    if name == "bytes": return T_BYTES
    if name == "bytes?": return T_OPT_BYTES
    if name == "hash": return T_HASH
    if name == "hash?": return T_OPT_HASH
    if name == "key": return T_KEY
    if name == "emits": return T_EMITS
    if name == "intents": return T_INTENTS
    if name == "names": return T_NAMES
    if name == "pairs": return T_PAIRS
    if name == "counts": return T_COUNTS
    raise ImportError(f"record field type {name!r} of aos.schema has no C counterpart")


cdef inline int load_layout(Layout* lay, object spec, list keep) except -1:
    """Fill ``lay`` from ``spec`` (an aos.schema Kind or Part); ``keep`` holds the bytes it points into."""
    from aos import schema

    cdef int i = 0
    cdef bytes key, kind
    slots = schema.layout(spec)
    if len(slots) > MAX_SLOTS:
        raise ImportError(f"record kind {spec.name} has more than {MAX_SLOTS} fields")
    is_kind = isinstance(spec, schema.Kind)
    lay.n = len(slots)
    lay.nfields = len(spec.fields)
    lay.as_map = is_kind or spec.as_map
    lay.cls = NULL
    if is_kind:
        kind = schema.text_key(spec.name)
        keep.append(kind)
        lay.kind = PyBytes_AS_STRING(kind)
        lay.kind_len = PyBytes_GET_SIZE(kind)
    else:
        lay.kind = NULL
        lay.kind_len = 0
    if not lay.as_map:  # an array part: its fields in declaration order, no keys
        for i in range(lay.nfields):
            lay.slots[i].key = NULL
            lay.slots[i].key_len = 0
            lay.slots[i].field = i
            lay.slots[i].type = type_code(spec.fields[i].type)
        return 0
    for s in slots:
        key = s.key
        keep.append(key)
        lay.slots[i].key = PyBytes_AS_STRING(key)
        lay.slots[i].key_len = PyBytes_GET_SIZE(key)
        lay.slots[i].field = s.field
        lay.slots[i].type = T_KIND if s.field < 0 else type_code(s.type)
        i += 1
    return 0
