# cython: language_level=3
"""The fields of what a reducer sees, declared for the inline loop (it fills them in C)."""


cdef class StepFields:
    cdef public object event_id
    cdef public object reducer
    cdef public object key
    cdef public object _admission
    cdef public object _ledger
    cdef public object _rng
    cdef public list emits
    cdef public list routes
    cdef public list intents
    cdef public dict reads


cdef class EventFields:
    cdef public object schema
    cdef public object value
    cdef public object seq
