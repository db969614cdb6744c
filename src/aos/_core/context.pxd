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


cdef class TypedPlan:
    cdef readonly object fn            # the reducer as written
    cdef readonly object wrapper       # aos.typed's wrapper: the whole of it, for what the plan does not cover
    cdef readonly object state_type    # the state's declared dataclass; None: the state is not typed
    cdef readonly tuple state_fields   # its field names, sorted
    cdef readonly dict events          # schema -> (its declared dataclass, its field names, sorted)
    cdef readonly object returned      # the wrapper's handling of a returned value of another type
