# cython: language_level=3, boundscheck=False, wraparound=False
# cython: freethreading_compatible=True
"""BLAKE3 digests computed in C, for the step and frame paths.

The same function as the ``blake3`` package's 32-byte digest (the tests
compare them on random inputs); used where a call into the package would
cost more than the hashing: state hashes and journal chain links.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t

__all__ = ["digest"]


cdef bytes digest_of(bytes data):
    """BLAKE3 of ``data``."""
    cdef uint8_t out[32]
    aos_b3_hash2(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), NULL, 0, out)
    return PyBytes_FromStringAndSize(<char*>out, 32)


cdef bytes digest_of2(bytes a, bytes b):
    """BLAKE3 of ``a || b``."""
    cdef uint8_t out[32]
    aos_b3_hash2(<const uint8_t*>PyBytes_AS_STRING(a), PyBytes_GET_SIZE(a),
                 <const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), out)
    return PyBytes_FromStringAndSize(<char*>out, 32)


def digest(bytes data, bytes more=b""):
    """The 32-byte BLAKE3 digest of ``data || more``."""
    return digest_of2(data, more)
