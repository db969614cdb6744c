# cython: language_level=3
"""The canonical CBOR reader's C API (the commit loops cimport it)."""

cpdef object decode(bytes data, bint strict=*)
cpdef object record_fields(int kind, bytes payload)
cpdef object event_admitted_fields(bytes payload)
