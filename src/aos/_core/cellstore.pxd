# cython: language_level=3
"""The cell store's declaration: the step loops read and write cells in C (``cimport``)."""

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef class CellStore:
    # per cell id (ids are dense, from 0, never reused)
    cdef int64_t* off          # where the state lies in the arena; -1: the cell holds no state
    cdef uint32_t* size        # its length in bytes
    cdef int64_t* word         # an int key's value, or where a str or bytes key lies in the key arena
    cdef uint16_t* spec_ix     # the reducer the cell runs: an index into ``spec_list``
    cdef uint8_t* kind         # the key's type (KEY_NONE, KEY_INT, KEY_STR, KEY_BYTES)
    cdef int64_t n             # cell ids allocated
    cdef int64_t cap
    # the states arena: every state's bytes, packed; ``garbage`` bytes of it are no one's
    cdef char* arena
    cdef int64_t used
    cdef int64_t arena_cap
    cdef readonly int64_t garbage
    cdef readonly int64_t compactions
    # the keys arena: str (UTF-8) and bytes keys, each a uint32 length and its bytes; never freed
    cdef char* keys
    cdef int64_t keys_used
    cdef int64_t keys_cap
    # (reducer name, key) -> cell id: open addressing, linear probing; slot = id + 1, 0 empty
    cdef uint32_t* table
    cdef int64_t table_cap     # a power of two
    # reducers: the specs cells run (their index per cell), the name of each, one index per name
    cdef readonly list spec_list
    cdef uint16_t* spec_name   # the name index of each spec index
    cdef int64_t spec_cap
    cdef dict spec_index       # id(spec) -> spec index (``spec_list`` keeps each spec alive)
    cdef dict name_index       # reducer name -> name index
    cdef object last_spec      # a one-entry cache of spec -> spec index
    cdef int64_t last_ix
    cdef public int64_t live   # cells that hold a state
    # cell id -> the era whose code the cell runs, for cells pinned to an earlier era (docs/upgrades.md)
    cdef public dict pins
    cdef public object current  # the world's manifest: the reducer a cell takes when its pin ends

    cdef int64_t c_id_of(self, object spec, object key) except -1
    cdef int64_t c_find(self, object name, object key) except -2
    cdef object c_spec(self, int64_t cid)
    cdef object c_key(self, int64_t cid)
    cdef object c_state(self, int64_t cid)
    cdef bint c_has_state(self, int64_t cid) noexcept
    cdef int c_set(self, int64_t cid, object state) except -1
    cdef int64_t _new_cell(self, int64_t six, int64_t nix, uint8_t kind, int64_t word, const char* data,
                           Py_ssize_t size, uint64_t h) except -1
    cdef int _set(self, int64_t cid, object state) except -1
    cdef const char* _key_bytes(self, int64_t cid, Py_ssize_t* klen) noexcept nogil
    cdef int64_t _spec_index(self, object spec) except -1
    cdef int _grow_cells(self) except -1
    cdef int _grow_table(self) except -1
    cdef int64_t _probe(self, int64_t nix, uint8_t kind, int64_t word, const char* data, Py_ssize_t size,
                        uint64_t h) noexcept
    cdef int _reserve_arena(self, int64_t extra) except -1
    cdef int _compact(self) except -1
    cdef int _check(self, object cid) except -1
