# cython: language_level=3
"""The canonical CBOR writer's C API (the commit loops cimport it)."""

cpdef object encode(object value)
cpdef bytes step_scheduled(object event_id, object reducer, object key, object input, object lane_id=*)
cpdef bytes step_committed(object event_id, object state_hash, tuple emits, tuple effects, object lane_id=*)
cpdef bytes event_admitted(object seq, object schema, bytes value, object lane_id=*, object visible_at=*,
                           object origin=*, object idempotency_key=*)
cpdef object write_record(int kind, tuple values)
cpdef object record_payload(object record)

cdef enum:
    KIND_NONE = -1      # no ``kind`` field found
    KIND_OTHER = 0
    KIND_ADMITTED = 1   # EventAdmitted
    KIND_SCHEDULED = 2  # StepScheduled
    KIND_COMMITTED = 3  # StepCommitted

cdef int kind_code(bytes payload) noexcept
