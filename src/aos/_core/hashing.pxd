# cython: language_level=3
"""BLAKE3 in C (``include/aos_blake3.h``), for the core modules."""

from libc.stdint cimport uint8_t


cdef extern from "aos_blake3.h" nogil:
    void aos_b3_hash2(const uint8_t* a, size_t na, const uint8_t* b, size_t nb, uint8_t* digest)


cdef bytes digest_of(bytes data)
cdef bytes digest_of2(bytes a, bytes b)
