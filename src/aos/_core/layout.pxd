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
    T_UINTS


cdef enum:
    MAX_SLOTS = 23  # a map of up to 23 entries (kind included) has a one-byte head
    MAX_KINDS = 64
    MAX_VARIANTS = 8  # one layout per subset of a kind's optional fields (aos.schema.MAX_OPTIONAL: 3)


cdef struct Piece:
    const char* lit  # the bytes before the field: map or array head, map keys, the ``kind`` entry
    Py_ssize_t lit_len
    int field  # index into the fields (declaration order)
    int type


cdef struct Layout:
    int nfields  # the declared fields
    int npieces  # the fields this layout writes (all but the optional ones it leaves out)
    int opt_first  # the index of the first optional field (nfields: none)
    Piece pieces[MAX_SLOTS]  # one per written field, in wire order
    const char* tail  # the bytes after the last field (the ``kind`` entry when it sorts last)
    Py_ssize_t tail_len
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
    if name == "uints": return T_UINTS
    raise ImportError(f"record field type {name!r} of aos.schema has no C counterpart")


cdef inline int load_layout(Layout* lay, object spec, int variant, list keep) except -1:
    """Fill ``lay`` from ``spec`` (an aos.schema Kind or Part); ``keep`` holds the bytes it points into.

    A record (or map part) is its map head, then per entry in wire order the
    key and the value; the constant bytes between two fields (keys, the
    ``kind`` entry) become one piece's literal. An array part is its head,
    then its fields in declaration order. ``variant``: which optional fields
    the layout writes (``aos.schema.layout``).
    """
    from aos import schema

    cdef int i = 0
    cdef bytes lit
    is_kind = isinstance(spec, schema.Kind)
    if len(spec.fields) + 1 > MAX_SLOTS:
        raise ImportError(f"record kind {spec.name} has more than {MAX_SLOTS - 1} fields")
    lay.nfields = len(spec.fields)
    optional = spec.optional if is_kind else ()
    lay.opt_first = optional[0] if optional else lay.nfields
    lay.cls = NULL
    if not is_kind and not spec.as_map:
        entries = [(None, f_i, f.type) for f_i, f in enumerate(spec.fields)]
        lit = bytes([0x80 | len(spec.fields)])
    else:
        slots = schema.layout(spec, variant)
        entries = [(s.key, s.field, s.type) for s in slots]
        lit = bytes([0xa0 | len(slots)])
    for key, field, type_ in entries:
        if key is not None:
            lit += key
        if field < 0:  # the kind entry
            lit += schema.text_key(spec.name)
            continue
        keep.append(lit)
        lay.pieces[i].lit = PyBytes_AS_STRING(lit)
        lay.pieces[i].lit_len = PyBytes_GET_SIZE(lit)
        lay.pieces[i].field = field
        lay.pieces[i].type = type_code(type_)
        i += 1
        lit = b""
    lay.npieces = i
    keep.append(lit)
    lay.tail = PyBytes_AS_STRING(lit)
    lay.tail_len = PyBytes_GET_SIZE(lit)
    return 0


cdef inline int load_kinds(Layout* layouts, int* n_variants, list keep) except -1:
    """Fill a ``Layout [MAX_KINDS][MAX_VARIANTS]`` table (``layouts``: its first entry) with every kind of
    aos.schema, one layout per subset of a kind's optional fields, and ``n_variants`` with how many each has.
    Returns the number of kinds."""
    from aos import schema

    cdef int i, v
    if len(schema.KINDS) > MAX_KINDS:
        raise ImportError(f"aos.schema declares more than {MAX_KINDS} record kinds")
    for i, k in enumerate(schema.KINDS):
        if schema.variants(k) > MAX_VARIANTS:
            raise ImportError(f"record kind {k.name} has more optional fields than {MAX_VARIANTS} layouts hold")
        n_variants[i] = schema.variants(k)
        for v in range(n_variants[i]):
            load_layout(&layouts[i * MAX_VARIANTS + v], k, v, keep)
    return len(schema.KINDS)
